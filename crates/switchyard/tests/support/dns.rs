//! A real (if tiny) DNS server on loopback UDP for tests: answers A queries from a table
//! the test changes while it runs, with TTL 0 so every lookup sees the latest answer.
//! Names it does not know get NXDOMAIN; AAAA queries for known names get no records.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

type Table = Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>;

pub struct TestDns {
    pub addr: SocketAddr,
    table: Table,
    task: tokio::task::JoinHandle<()>,
}

impl TestDns {
    pub async fn start() -> Self {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let table = Table::default();
        let answers = table.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buf).await else { continue };
                if let Some(reply) = answer(&buf[..len], &answers) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        Self { addr, table, task }
    }

    /// `name` answers `addresses` from now on.
    pub fn set(&self, name: &str, addresses: &[Ipv4Addr]) {
        self.table.lock().unwrap().insert(name.to_ascii_lowercase(), addresses.to_vec());
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const TYPE_A: u16 = 1;
const NXDOMAIN: u8 = 3;

/// The response to one query, or None for a packet that is not one.
fn answer(query: &[u8], table: &Table) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: length-prefixed labels up to a zero byte, then type and class.
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question_end = at + 4;
    let known = table.lock().unwrap().get(&labels.join(".")).cloned();
    let records = match (&known, qtype) {
        (Some(addresses), TYPE_A) => addresses.clone(),
        _ => Vec::new(),
    };
    let mut reply = Vec::with_capacity(question_end + records.len() * 16);
    reply.extend_from_slice(&query[..2]); // id
    let recursion_desired = query[2] & 0x01;
    reply.push(0x80 | 0x04 | recursion_desired); // response, authoritative
    reply.push(0x80 | if known.is_none() { NXDOMAIN } else { 0 }); // recursion available, rcode
    reply.extend_from_slice(&1u16.to_be_bytes());
    reply.extend_from_slice(&(records.len() as u16).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]); // no authority or additional records
    reply.extend_from_slice(query.get(12..question_end)?);
    for address in records {
        reply.extend_from_slice(&[0xC0, 12]); // the name: a pointer to the question's
        reply.extend_from_slice(&TYPE_A.to_be_bytes());
        reply.extend_from_slice(&1u16.to_be_bytes()); // class IN
        reply.extend_from_slice(&0u32.to_be_bytes()); // TTL 0: never cached
        reply.extend_from_slice(&4u16.to_be_bytes());
        reply.extend_from_slice(&address.octets());
    }
    Some(reply)
}
