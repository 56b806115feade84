//! The standalone source: a folder of YAML files, rescanned on an interval. A file's
//! modification time and size decide whether it is read again, so an idle folder costs
//! one `stat` per file per scan, and a change to one file parses only that file (YAML
//! parsing costs several times what compile does).
//!
//! One copy of the parsed resources exists: the caller's. A scan takes the previous
//! copy back and moves each unchanged file's objects (its run in every list, which this
//! source remembers the length of) into the new one; at 10,000 routes a second, cached
//! copy was ~10 MiB (docs/benchmarks.md, "Proxy memory").

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use switchyard_compile::{CompileOptions, InvalidObject, ObjectRef, ResourceKind, Resources, SecretData, manifest, reason};

/// The folder and what was seen in it.
pub struct FolderSource {
    dir: PathBuf,
    /// The gateway-wide compile options (command line), set on every scan's resources.
    options: CompileOptions,
    /// None until the first scan.
    fingerprint: Option<Vec<(PathBuf, SystemTime, u64)>>,
    /// The files the last scan read, in order: where each one's objects sit in the
    /// resources that scan produced.
    files: Vec<FilePart>,
    /// When each object was first seen: standalone manifests carry no
    /// creationTimestamp, and "oldest wins" needs one that stays put across reloads.
    first_seen: HashMap<(&'static str, String, String), Time>,
}

/// A file's Secrets, by (namespace, name).
type Secrets = BTreeMap<(String, String), SecretData>;

/// One file as last parsed: its modification time and size, how many objects of each
/// list it added, and its Secrets (a map, so not a run of a list).
struct FilePart {
    path: PathBuf,
    modified: SystemTime,
    len: u64,
    counts: Counts,
    secrets: Secrets,
}

/// How many objects one file holds in each list of [`Resources`].
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct Counts {
    api_routes: usize,
    backend_services: usize,
    vpc_authorizations: usize,
    dns_records: usize,
    apps: usize,
    certificates: usize,
    invalid: usize,
}

impl Counts {
    fn of(resources: &Resources) -> Self {
        Self {
            api_routes: resources.api_routes.len(),
            backend_services: resources.backend_services.len(),
            vpc_authorizations: resources.vpc_authorizations.len(),
            dns_records: resources.dns_records.len(),
            apps: resources.apps.len(),
            certificates: resources.certificates.len(),
            invalid: resources.invalid.len(),
        }
    }

    fn add(self, other: Self) -> Self {
        Self {
            api_routes: self.api_routes + other.api_routes,
            backend_services: self.backend_services + other.backend_services,
            vpc_authorizations: self.vpc_authorizations + other.vpc_authorizations,
            dns_records: self.dns_records + other.dns_records,
            apps: self.apps + other.apps,
            certificates: self.certificates + other.certificates,
            invalid: self.invalid + other.invalid,
        }
    }
}

impl FolderSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), options: CompileOptions::default(), fingerprint: None, files: Vec::new(), first_seen: HashMap::new() }
    }

    /// The compile options every scan's resources carry.
    pub fn with_options(self, options: CompileOptions) -> Self {
        Self { options, ..self }
    }

    /// Reads the folder into `resources` if anything in it changed since the last scan,
    /// and says whether it did. `resources` must be what the last scan left (or empty):
    /// unchanged files' objects are moved from it; when it does not hold what the last
    /// scan produced, every file is parsed again.
    pub fn scan(&mut self, resources: &mut Resources) -> bool {
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
            return false;
        }
        let mut kept = self.take_unchanged(std::mem::take(resources), &fingerprint);
        let config_dir = std::path::absolute(&self.dir).ok().map(|d| d.display().to_string());
        let mut next = Resources { options: self.options, config_dir, ..Resources::default() };
        if !self.dir.is_dir() {
            next.invalid.push(unreadable(&self.dir, "is not a readable directory"));
        }
        let mut parts = Vec::with_capacity(fingerprint.len());
        for (path, modified, len) in &fingerprint {
            let (part, secrets) = match kept.remove(path) {
                Some(kept) => kept,
                None => {
                    let mut part = parse_file(path);
                    let secrets = std::mem::take(&mut part.secrets);
                    (part, secrets)
                }
            };
            parts.push((FilePart { path: path.clone(), modified: *modified, len: *len, counts: Counts::of(&part), secrets }, part));
        }
        reserve_for(&mut next, parts.iter().map(|(file, _)| file.counts));
        self.files = Vec::with_capacity(parts.len());
        for (file, part) in parts {
            append_part(&mut next, part);
            next.secrets.extend(file.secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
            self.files.push(file);
        }
        self.fingerprint = Some(fingerprint);
        self.stamp_creation_times(&mut next);
        *resources = next;
        true
    }

    /// Splits the last scan's `resources` into each unchanged file's objects (moved, not
    /// copied) and its Secrets, by path; the rest is dropped. Nothing is kept when
    /// `resources` is not what the last scan produced.
    fn take_unchanged(
        &mut self,
        mut resources: Resources,
        fingerprint: &[(PathBuf, SystemTime, u64)],
    ) -> HashMap<PathBuf, (Resources, Secrets)> {
        let files = std::mem::take(&mut self.files);
        let mut kept = HashMap::new();
        // The folder's own "unreadable" entry comes first; the files' objects follow.
        let lead = Counts {
            invalid: resources.invalid.len().saturating_sub(files.iter().fold(0, |n, f| n + f.counts.invalid)),
            ..Counts::default()
        };
        let total = files.iter().fold(lead, |sum, f| sum.add(f.counts));
        if total != Counts::of(&resources) {
            return kept;
        }
        let unchanged: HashMap<&Path, (SystemTime, u64)> =
            fingerprint.iter().filter(|(_, at, _)| *at != SystemTime::UNIX_EPOCH).map(|(p, at, len)| (p.as_path(), (*at, *len))).collect();
        resources.invalid.drain(..lead.invalid);
        for file in files {
            let part = take_front(&mut resources, file.counts);
            if unchanged.get(file.path.as_path()) == Some(&(file.modified, file.len)) {
                kept.insert(file.path, (part, file.secrets));
            }
        }
        kept
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

/// The first `counts` objects of each list of `resources`, moved out into a part of their own.
fn take_front(resources: &mut Resources, counts: Counts) -> Resources {
    Resources {
        api_routes: resources.api_routes.drain(..counts.api_routes).collect(),
        backend_services: resources.backend_services.drain(..counts.backend_services).collect(),
        vpc_authorizations: resources.vpc_authorizations.drain(..counts.vpc_authorizations).collect(),
        dns_records: resources.dns_records.drain(..counts.dns_records).collect(),
        apps: resources.apps.drain(..counts.apps).collect(),
        certificates: resources.certificates.drain(..counts.certificates).collect(),
        invalid: resources.invalid.drain(..counts.invalid).collect(),
        ..Resources::default()
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

/// Room in `resources` for every file's objects: the lists live until the next change.
fn reserve_for(resources: &mut Resources, parts: impl Iterator<Item = Counts>) {
    let sum = parts.fold(Counts::default(), Counts::add);
    resources.api_routes.reserve_exact(sum.api_routes);
    resources.backend_services.reserve_exact(sum.backend_services);
    resources.vpc_authorizations.reserve_exact(sum.vpc_authorizations);
    resources.dns_records.reserve_exact(sum.dns_records);
    resources.apps.reserve_exact(sum.apps);
    resources.certificates.reserve_exact(sum.certificates);
    resources.invalid.reserve_exact(sum.invalid);
}

/// Appends one file's objects (moved), as reading the files in order into one set would.
fn append_part(resources: &mut Resources, mut part: Resources) {
    resources.api_routes.append(&mut part.api_routes);
    resources.backend_services.append(&mut part.backend_services);
    resources.vpc_authorizations.append(&mut part.vpc_authorizations);
    resources.dns_records.append(&mut part.dns_records);
    resources.apps.append(&mut part.apps);
    resources.certificates.append(&mut part.certificates);
    resources.invalid.append(&mut part.invalid);
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

    /// A scan into empty resources (every file parsed).
    fn scanned(source: &mut FolderSource) -> Resources {
        let mut resources = Resources::default();
        assert!(source.scan(&mut resources), "a first scan reads");
        resources
    }

    const ROUTE: &str = "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: m}\nspec: {mock: {statusCode: 200}}\n";

    #[test]
    fn a_scan_reads_yaml_files_and_skips_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), ROUTE).unwrap();
        std::fs::write(dir.path().join(".a.yaml.swp"), "garbage: [").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
        let resources = scanned(&mut FolderSource::new(dir.path()));
        assert_eq!(resources.backend_services.len(), 1);
        assert!(resources.invalid.is_empty());
    }

    #[test]
    fn an_unchanged_folder_is_not_read_again_and_a_change_is() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, ROUTE).unwrap();
        let mut source = FolderSource::new(dir.path());
        let mut resources = Resources::default();
        assert!(source.scan(&mut resources));
        assert!(!source.scan(&mut resources));
        assert_eq!(resources.backend_services.len(), 1, "an unchanged scan leaves the resources alone");
        std::fs::write(&file, format!("{ROUTE}---\n{}", ROUTE.replace("name: m", "name: n"))).unwrap();
        assert!(source.scan(&mut resources));
        assert_eq!(resources.backend_services.len(), 2);
    }

    #[test]
    fn every_scan_carries_the_gateways_compile_options() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), ROUTE).unwrap();
        let options = CompileOptions { allow_link_local_grants: true, host_ownership: switchyard_compile::HostOwnership::PerNamespace };
        let resources = scanned(&mut FolderSource::new(dir.path()).with_options(options));
        assert_eq!(resources.options, options);
        assert_eq!(scanned(&mut FolderSource::new(dir.path())).options, CompileOptions::default());
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
        assert_eq!(scanned(&mut FolderSource::new(dir.path())).backend_services.len(), 1);
    }

    #[test]
    fn a_rescan_reparses_only_the_changed_file_and_keeps_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"), dir.path().join("c.yaml"));
        std::fs::write(&a, ROUTE.replace("name: m", "name: first")).unwrap();
        std::fs::write(&b, ROUTE.replace("name: m", "name: second")).unwrap();
        std::fs::write(&c, format!("{ROUTE}---\n{}", ROUTE.replace("name: m", "name: third"))).unwrap();
        let mut source = FolderSource::new(dir.path());
        let mut resources = Resources::default();
        let names = |r: &Resources| r.backend_services.iter().map(|b| b.metadata.name.clone().unwrap()).collect::<Vec<_>>();
        assert!(source.scan(&mut resources));
        assert_eq!(names(&resources), ["first", "second", "m", "third"]);
        // Mark a.yaml's and c.yaml's objects in the resources the scan produced: if an
        // unchanged file were read again (or its objects taken from the wrong place), the
        // markers would disappear or move.
        resources.backend_services[0].metadata.name = Some("kept-a".into());
        resources.backend_services[3].metadata.name = Some("kept-c".into());
        std::fs::write(&b, format!("{ROUTE}---\n{}", ROUTE.replace("name: m", "name: changed"))).unwrap();
        assert!(source.scan(&mut resources));
        assert_eq!(names(&resources), ["kept-a", "m", "changed", "m", "kept-c"]);
        std::fs::remove_file(&a).unwrap();
        assert!(source.scan(&mut resources));
        assert_eq!(names(&resources), ["m", "changed", "m", "kept-c"], "a removed file's resources go");
        assert_eq!(source.files.len(), 2);
    }

    #[test]
    fn resources_that_are_not_the_last_scans_are_parsed_again() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        std::fs::write(&a, ROUTE.replace("name: m", "name: first")).unwrap();
        std::fs::write(&b, ROUTE.replace("name: m", "name: second")).unwrap();
        let mut source = FolderSource::new(dir.path());
        let mut resources = Resources::default();
        assert!(source.scan(&mut resources));
        std::fs::write(&b, ROUTE.replace("name: m", "name: changed")).unwrap();
        // Someone else's (here: empty) resources: a.yaml's objects cannot come from them.
        let mut other = Resources::default();
        assert!(source.scan(&mut other));
        let names: Vec<_> = other.backend_services.iter().map(|b| b.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["first", "changed"]);
    }

    #[test]
    fn creation_times_stay_put_across_rescans() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, ROUTE).unwrap();
        let mut source = FolderSource::new(dir.path());
        let first = scanned(&mut source).backend_services[0].metadata.creation_timestamp.clone();
        std::fs::write(&file, format!("{ROUTE}\n# touched\n")).unwrap();
        // Fresh resources: the file is parsed again and stamped from the first sighting.
        let second = scanned(&mut source).backend_services[0].metadata.creation_timestamp.clone();
        assert!(first.is_some());
        assert_eq!(first, second);
    }
}
