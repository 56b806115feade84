use std::collections::BTreeMap;
use std::net::IpAddr;

use switchyard_api::{DnsRecord, DnsRecordType};

use super::{Rejection, accept, age_key, name, reject, status_for};
use crate::snapshot::DnsEntry;
use crate::{ResourceKind, ResourceStatus, reason, validate};

/// Validates DnsRecords; for a domain claimed twice the oldest wins and the others are
/// `Conflicted`.
pub(super) fn compile_all(records: &[DnsRecord], statuses: &mut Vec<ResourceStatus>) -> Vec<DnsEntry> {
    let mut sorted: Vec<&DnsRecord> = records.iter().collect();
    sorted.sort_by(|a, b| age_key(&a.metadata).cmp(&age_key(&b.metadata)));
    let mut owners: BTreeMap<String, (String, DnsEntry)> = BTreeMap::new();
    for record in sorted {
        let mut status = status_for(ResourceKind::DnsRecord, &record.metadata, false);
        match entry(record) {
            Ok(entry) => match owners.get(&entry.domain) {
                Some((owner, _)) => reject(
                    &mut status,
                    Rejection::new(reason::CONFLICTED, format!("domain {} is already served by the older DnsRecord {owner}", entry.domain)),
                ),
                None => {
                    accept(&mut status);
                    owners.insert(entry.domain.clone(), (name(&record.metadata).to_owned(), entry));
                }
            },
            Err(why) => reject(&mut status, why),
        }
        statuses.push(status);
    }
    owners.into_values().map(|(_, entry)| entry).collect()
}

fn entry(record: &DnsRecord) -> Result<DnsEntry, Rejection> {
    let spec = &record.spec;
    let domain = spec.domain.trim_end_matches('.').to_ascii_lowercase();
    validate::dns_name(&domain).map_err(|e| Rejection::new(reason::INVALID_HOST, format!("domain: {e}")))?;
    if spec.records.is_empty() {
        return Err(Rejection::new(reason::INVALID_SPEC, "records: list at least one record"));
    }
    let mut records = Vec::with_capacity(spec.records.len());
    for (i, r) in spec.records.iter().enumerate() {
        let address: IpAddr = r
            .address
            .parse()
            .map_err(|_| Rejection::new(reason::INVALID_ADDRESS, format!("records[{i}].address {:?} is not an IP address", r.address)))?;
        let family_ok = matches!((spec.type_, address), (DnsRecordType::A, IpAddr::V4(_)) | (DnsRecordType::AAAA, IpAddr::V6(_)));
        if !family_ok {
            let want = if spec.type_ == DnsRecordType::A { "IPv4" } else { "IPv6" };
            return Err(Rejection::new(
                reason::INVALID_ADDRESS,
                format!("records[{i}].address {address} is not {want}, as type {:?} needs", spec.type_),
            ));
        }
        if r.weight > 100 {
            return Err(Rejection::new(reason::INVALID_WEIGHTS, format!("records[{i}].weight {} is above 100", r.weight)));
        }
        records.push((address, r.weight));
    }
    if records.iter().all(|(_, w)| *w == 0) {
        return Err(Rejection::new(reason::INVALID_WEIGHTS, "records: at least one weight must be above 0"));
    }
    Ok(DnsEntry { domain, records })
}
