//! The seccomp filters init installs as its last step before the command runs, as the daemon
//! hands them over: a sealed memfd on fd [`FILTERS_FD`] holding one record per filter, each
//! `[instruction count u32 LE][count × 8-byte struct sock_filter, native byte order]`. Init
//! installs them in order (a stack: the kernel runs every one and takes the strictest
//! answer). No fd there means no filter (`--seccomp-profile unconfined`).

/// The fd the filters come on.
pub const FILTERS_FD: i32 = 5;
/// Bytes of one BPF instruction (`struct sock_filter`).
pub const INSTRUCTION_LEN: usize = 8;
/// Most instructions one filter may have (the kernel's BPF_MAXINSNS).
pub const MAX_INSTRUCTIONS: usize = 4096;

/// The records of `filters`, each a list of instructions already in the kernel's layout.
pub fn encode(filters: &[Vec<[u8; INSTRUCTION_LEN]>]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for filter in filters {
        let count = u32::try_from(filter.len()).expect("a filter has at most 4096 instructions");
        bytes.extend_from_slice(&count.to_le_bytes());
        filter.iter().for_each(|instruction| bytes.extend_from_slice(instruction));
    }
    bytes
}

/// The filters of `bytes`, each as its instructions' bytes; `None` if malformed (a filter
/// empty, too long or cut short).
pub fn decode(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut filters = Vec::new();
    while !bytes.is_empty() {
        let (count, rest) = bytes.split_at_checked(4)?;
        let count = usize::try_from(u32::from_le_bytes(count.try_into().ok()?)).ok()?;
        if count == 0 || count > MAX_INSTRUCTIONS {
            return None;
        }
        let (filter, rest) = rest.split_at_checked(count * INSTRUCTION_LEN)?;
        filters.push(filter);
        bytes = rest;
    }
    Some(filters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_round_trip() {
        let filters = vec![vec![[1; 8], [2; 8]], vec![[3; 8]]];
        let bytes = encode(&filters);
        let decoded = decode(&bytes).expect("decodes");
        assert_eq!(decoded, [&[[1u8; 8], [2; 8]].concat()[..], &[3u8; 8][..]]);
        assert_eq!(decode(&[]), Some(vec![]));
    }

    #[test]
    fn malformed_filters_do_not_decode() {
        let bytes = encode(&[vec![[1; 8], [2; 8]]]);
        assert!(decode(&bytes[..bytes.len() - 1]).is_none(), "cut short");
        assert!(decode(&[0, 0, 0, 0]).is_none(), "empty filter");
        assert!(decode(&[1, 0]).is_none(), "cut count");
        assert!(decode(&4097u32.to_le_bytes()).is_none(), "too long");
    }
}
