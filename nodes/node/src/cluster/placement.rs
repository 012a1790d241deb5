//! Where an actor lives: rendezvous (highest random weight) hashing of the
//! actor's key over the live members.
//!
//! Every node computes the same owner from the same member set, without
//! talking to the others; when a member joins or leaves, only the actors
//! whose highest-weight member changed move (about 1/n of them).

/// The kind of actor a key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorKind {
    Queue,
    Informant,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Informant => "informant",
        }
    }
}

/// The placement key of an actor: `queue:<tenant>/<id>` or
/// `informant:<tenant>/<id>`.
pub fn actor_key(kind: ActorKind, tenant: &str, id: &str) -> String {
    format!("{}:{tenant}/{id}", kind.as_str())
}

fn weight(member: &str, key: &str) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(member.as_bytes());
    hasher.update(&[0]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// The member that owns `key`, `None` when there is no member. Ties (two
/// equal 64-bit weights) go to the smaller member id, so the answer does
/// not depend on the members' order.
pub fn owner<'a>(members: impl IntoIterator<Item = &'a str>, key: &str) -> Option<&'a str> {
    members.into_iter().map(|m| (weight(m, key), std::cmp::Reverse(m))).max().map(|(_, std::cmp::Reverse(m))| m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn no_member_owns_nothing_and_one_member_owns_everything() {
        assert_eq!(owner(std::iter::empty(), "queue:cai/justice"), None);
        assert_eq!(owner(["a"], "queue:cai/justice"), Some("a"));
    }

    #[test]
    fn keys_spread_evenly_enough() {
        let members = names(3);
        let mut counts = [0usize; 3];
        for i in 0..3_000 {
            let key = actor_key(ActorKind::Informant, "cai", &format!("i{i}"));
            let o = owner(members.iter().map(String::as_str), &key).expect("owner");
            counts[members.iter().position(|m| m == o).expect("member")] += 1;
        }
        for c in counts {
            assert!((800..1_200).contains(&c), "{counts:?}");
        }
    }

    proptest! {
        #[test]
        fn the_order_of_members_does_not_matter(n in 1usize..8, key in "[a-z]{1,12}", rotate in 0usize..8) {
            let mut members = names(n);
            let a = owner(members.iter().map(String::as_str), &key).map(str::to_owned);
            members.rotate_left(rotate % n);
            members.reverse();
            prop_assert_eq!(a.as_deref(), owner(members.iter().map(String::as_str), &key));
        }

        #[test]
        fn a_leaving_member_moves_only_its_own_actors(n in 2usize..8, leaving in 0usize..8, keys in proptest::collection::vec("[a-z0-9]{1,10}", 1..60)) {
            let members = names(n);
            let gone = &members[leaving % n];
            let rest: Vec<&str> = members.iter().map(String::as_str).filter(|m| m != gone).collect();
            for key in &keys {
                let before = owner(members.iter().map(String::as_str), key).expect("owner");
                let after = owner(rest.iter().copied(), key).expect("owner");
                if before != gone {
                    prop_assert_eq!(before, after);
                }
            }
        }

        #[test]
        fn a_joining_member_takes_actors_only_for_itself(n in 1usize..8, keys in proptest::collection::vec("[a-z0-9]{1,10}", 1..60)) {
            let members = names(n);
            let newcomer = "node-new".to_string();
            for key in &keys {
                let before = owner(members.iter().map(String::as_str), key).expect("owner");
                let after = owner(members.iter().chain(std::iter::once(&newcomer)).map(String::as_str), key).expect("owner");
                prop_assert!(after == before || after == newcomer);
            }
        }
    }
}
