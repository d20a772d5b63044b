//! CIDR blocks that bind a credential to the addresses it may be used from.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::Error;

/// Parses CIDR blocks such as `10.0.0.0/8`; a bare address is a single-host block.
pub(crate) fn parse_blocks(field: &str, items: &[String]) -> Result<Vec<IpNet>, Error> {
    items
        .iter()
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    Error::bad_request(format!(
                        "invalid CIDR block {item:?} in {field}: expected an address or a \
                         block such as \"10.0.0.0/8\""
                    ))
                })
        })
        .collect()
}

/// Checks `items` as CIDR blocks and returns them in canonical text form.
pub(crate) fn normalize(field: &str, items: &[String]) -> Result<Vec<String>, Error> {
    Ok(parse_blocks(field, items)?
        .iter()
        .map(ToString::to_string)
        .collect())
}

/// Whether `address` lies in one of `blocks`. An empty list binds nothing, so it allows every
/// address, including an unknown one.
pub(crate) fn allows(blocks: &[String], address: Option<IpAddr>) -> bool {
    if blocks.is_empty() {
        return true;
    }
    let Some(address) = address else {
        return false;
    };
    let address = canonical(address);
    blocks
        .iter()
        .filter_map(|block| block.parse::<IpNet>().ok())
        .any(|block| block.contains(&address))
}

/// Whether every block of `inner` lies inside some block of `outer`.
pub(crate) fn is_subset(inner: &[String], outer: &[String]) -> bool {
    let outer: Vec<IpNet> = outer.iter().filter_map(|b| b.parse().ok()).collect();
    inner
        .iter()
        .filter_map(|block| block.parse::<IpNet>().ok())
        .all(|block| outer.iter().any(|o| o.contains(&block)))
}

/// An IPv4 address mapped into IPv6 (`::ffff:127.0.0.1`, as a dual-stack listener reports
/// it) is compared as the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(items: &[&str]) -> Vec<String> {
        let items: Vec<String> = items.iter().map(|s| (*s).to_owned()).collect();
        normalize("cidr_list", &items).unwrap()
    }

    #[test]
    fn bare_address_is_single_host_block() {
        assert_eq!(blocks(&["127.0.0.1"]), ["127.0.0.1/32"]);
    }

    #[test]
    fn invalid_block_names_the_value() {
        let error = normalize("cidr_list", &["10.0.0.0/33".to_owned()]).unwrap_err();
        assert!(error.to_string().contains("10.0.0.0/33"), "{error}");
    }

    #[test]
    fn allows_checks_membership() {
        let bound = blocks(&["10.0.0.0/8"]);
        assert!(allows(&bound, Some("10.1.2.3".parse().unwrap())));
        assert!(!allows(&bound, Some("11.0.0.1".parse().unwrap())));
        assert!(!allows(&bound, None));
        assert!(allows(&[], None));
    }

    #[test]
    fn mapped_ipv4_matches_ipv4_block() {
        let bound = blocks(&["127.0.0.1/32"]);
        assert!(allows(&bound, Some("::ffff:127.0.0.1".parse().unwrap())));
    }

    #[test]
    fn subset_requires_containment() {
        let outer = blocks(&["10.0.0.0/8"]);
        assert!(is_subset(&blocks(&["10.1.0.0/16"]), &outer));
        assert!(!is_subset(&blocks(&["11.0.0.0/16"]), &outer));
    }
}
