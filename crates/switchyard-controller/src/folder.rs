//! The standalone source: a folder of YAML files, rescanned on an interval. A file's
//! modification time and size decide whether it is read again, so an idle folder costs
//! one `stat` per file per scan, and a change to one file parses only that file (each
//! file's resources are kept parsed; YAML parsing costs several times what compile does).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use switchyard_compile::{CompileOptions, InvalidObject, ObjectRef, ResourceKind, Resources, manifest, reason};

/// The folder and what was seen in it.
pub struct FolderSource {
    dir: PathBuf,
    /// The gateway-wide compile options (command line), set on every scan's resources.
    options: CompileOptions,
    /// None until the first scan.
    fingerprint: Option<Vec<(PathBuf, SystemTime, u64)>>,
    /// Each file's resources as last parsed, with the modification time and size they
    /// were parsed at.
    parsed: HashMap<PathBuf, (SystemTime, u64, Resources)>,
    /// When each object was first seen: standalone manifests carry no
    /// creationTimestamp, and "oldest wins" needs one that stays put across reloads.
    first_seen: HashMap<(&'static str, String, String), Time>,
}

impl FolderSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), options: CompileOptions::default(), fingerprint: None, parsed: HashMap::new(), first_seen: HashMap::new() }
    }

    /// The compile options every scan's resources carry.
    pub fn with_options(self, options: CompileOptions) -> Self {
        Self { options, ..self }
    }

    /// Reads the folder if anything in it changed since the last scan.
    pub fn scan(&mut self) -> Option<Resources> {
        let files = yaml_files(&self.dir);
        let fingerprint: Vec<_> = files
            .iter()
            .map(|p| {
                let meta = std::fs::metadata(p).ok();
                let modified = meta.as_ref().and_then(|m| m.modified().ok()).unwrap_or(SystemTime::UNIX_EPOCH);
                (p.clone(), modified, meta.map_or(0, |m| m.len()))
            })
            .collect();
        if self.fingerprint.as_ref() == Some(&fingerprint) {
            return None;
        }
        let config_dir = std::path::absolute(&self.dir).ok().map(|d| d.display().to_string());
        let mut resources = Resources { options: self.options, config_dir, ..Resources::default() };
        if !self.dir.is_dir() {
            resources.invalid.push(unreadable(&self.dir, "is not a readable directory"));
        }
        let mut parsed = HashMap::with_capacity(fingerprint.len());
        for (path, modified, len) in &fingerprint {
            let part = match self.parsed.remove(path) {
                Some((at, size, part)) if at == *modified && size == *len && *modified != SystemTime::UNIX_EPOCH => part,
                _ => parse_file(path),
            };
            add_part(&mut resources, &part);
            parsed.insert(path.clone(), (*modified, *len, part));
        }
        self.parsed = parsed;
        self.fingerprint = Some(fingerprint);
        self.stamp_creation_times(&mut resources);
        Some(resources)
    }

    fn stamp_creation_times(&mut self, resources: &mut Resources) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let mut stamp = |kind: &'static str, meta: &mut ObjectMeta| {
            if meta.creation_timestamp.is_some() {
                return;
            }
            let key = (kind, meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
            meta.creation_timestamp = Some(self.first_seen.entry(key).or_insert_with(|| now.clone()).clone());
        };
        resources.api_routes.iter_mut().for_each(|r| stamp("ApiRoute", &mut r.metadata));
        resources.backend_services.iter_mut().for_each(|r| stamp("BackendService", &mut r.metadata));
        resources.vpc_authorizations.iter_mut().for_each(|r| stamp("VpcAuthorization", &mut r.metadata));
        resources.dns_records.iter_mut().for_each(|r| stamp("DnsRecord", &mut r.metadata));
    }
}

/// One file's resources (or why it could not be read).
fn parse_file(path: &Path) -> Resources {
    let mut part = Resources::default();
    match std::fs::read_to_string(path) {
        Ok(text) => manifest::add_yaml(&mut part, &path.display().to_string(), &text),
        Err(e) => part.invalid.push(unreadable(path, &e.to_string())),
    }
    part
}

/// Appends one file's resources, as reading the files in order into one set would.
fn add_part(resources: &mut Resources, part: &Resources) {
    resources.api_routes.extend_from_slice(&part.api_routes);
    resources.backend_services.extend_from_slice(&part.backend_services);
    resources.vpc_authorizations.extend_from_slice(&part.vpc_authorizations);
    resources.dns_records.extend_from_slice(&part.dns_records);
    resources.apps.extend_from_slice(&part.apps);
    resources.certificates.extend_from_slice(&part.certificates);
    resources.invalid.extend_from_slice(&part.invalid);
    resources.secrets.extend(part.secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
}

fn unreadable(path: &Path, error: &str) -> InvalidObject {
    InvalidObject {
        object: ObjectRef::new(ResourceKind::Unknown, None, &path.display().to_string()),
        generation: None,
        reason: reason::INVALID_SPEC,
        message: format!("{}: {error}", path.display()),
    }
}

/// `*.yaml`, `*.yml` and `*.json` under `dir`, recursively, sorted; hidden files
/// (editor swap files) are skipped. Symbolic links are followed, but every directory and
/// file is visited once (by device and inode): a link loop (`a/b -> ..`) cannot make a
/// scan spin, and a file reachable by two paths is read once.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let identity = |meta: &std::fs::Metadata| (meta.dev(), meta.ino());
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    if let Ok(meta) = std::fs::metadata(dir) {
        seen.insert(identity(&meta));
    }
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            // `metadata` follows links; a dangling link has none and is skipped.
            let (path, Ok(meta)) = (entry.path(), std::fs::metadata(entry.path())) else { continue };
            if hidden || !seen.insert(identity(&meta)) {
                continue;
            }
            if meta.is_dir() {
                pending.push(path);
            } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: m}\nspec: {mock: {statusCode: 200}}\n";

    #[test]
    fn a_scan_reads_yaml_files_and_skips_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), ROUTE).unwrap();
        std::fs::write(dir.path().join(".a.yaml.swp"), "garbage: [").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
        let resources = FolderSource::new(dir.path()).scan().unwrap();
        assert_eq!(resources.backend_services.len(), 1);
        assert!(resources.invalid.is_empty());
    }

    #[test]
    fn an_unchanged_folder_is_not_read_again_and_a_change_is() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, ROUTE).unwrap();
        let mut source = FolderSource::new(dir.path());
        assert!(source.scan().is_some());
        assert!(source.scan().is_none());
        std::fs::write(&file, format!("{ROUTE}---\n{}", ROUTE.replace("name: m", "name: n"))).unwrap();
        assert_eq!(source.scan().unwrap().backend_services.len(), 2);
    }

    #[test]
    fn every_scan_carries_the_gateways_compile_options() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), ROUTE).unwrap();
        let options = CompileOptions { allow_link_local_grants: true, host_ownership: switchyard_compile::HostOwnership::PerNamespace };
        let resources = FolderSource::new(dir.path()).with_options(options).scan().unwrap();
        assert_eq!(resources.options, options);
        assert_eq!(FolderSource::new(dir.path()).scan().unwrap().options, CompileOptions::default());
    }

    #[test]
    fn a_symlink_loop_is_walked_once_and_a_linked_file_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("a.yaml"), ROUTE).unwrap();
        std::os::unix::fs::symlink(dir.path(), sub.join("loop")).unwrap();
        std::os::unix::fs::symlink(sub.join("a.yaml"), dir.path().join("alias.yaml")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("missing"), dir.path().join("dangling.yaml")).unwrap();
        let files = yaml_files(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(FolderSource::new(dir.path()).scan().unwrap().backend_services.len(), 1);
    }

    #[test]
    fn a_rescan_reparses_only_the_changed_file_and_keeps_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        std::fs::write(&a, ROUTE.replace("name: m", "name: first")).unwrap();
        std::fs::write(&b, ROUTE.replace("name: m", "name: second")).unwrap();
        let mut source = FolderSource::new(dir.path());
        let names = |r: &Resources| r.backend_services.iter().map(|b| b.metadata.name.clone().unwrap()).collect::<Vec<_>>();
        assert_eq!(names(&source.scan().unwrap()), ["first", "second"]);
        // Replace a.yaml's parsed copy with a marker: if an unchanged file were read
        // again the marker would disappear.
        source.parsed.get_mut(&a).unwrap().2.backend_services[0].metadata.name = Some("cached".into());
        std::fs::write(&b, ROUTE.replace("name: m", "name: changed")).unwrap();
        assert_eq!(names(&source.scan().unwrap()), ["cached", "changed"]);
        std::fs::remove_file(&a).unwrap();
        assert_eq!(names(&source.scan().unwrap()), ["changed"], "a removed file's resources go");
        assert_eq!(source.parsed.len(), 1);
    }

    #[test]
    fn creation_times_stay_put_across_rescans() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, ROUTE).unwrap();
        let mut source = FolderSource::new(dir.path());
        let first = source.scan().unwrap().backend_services[0].metadata.creation_timestamp.clone();
        std::fs::write(&file, format!("{ROUTE}\n# touched\n")).unwrap();
        let second = source.scan().unwrap().backend_services[0].metadata.creation_timestamp.clone();
        assert!(first.is_some());
        assert_eq!(first, second);
    }
}
