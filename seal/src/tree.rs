//! The two Merkle trees of sealing, both RFC 6962 / 9162 (through `ct-merkle`): an hour's
//! tree over its events, and the log over hour roots.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use serde::{Deserialize, Serialize};
use sha2_merkle::Sha256;

use crate::error::{Error, Result};
use crate::leaf::EventLeaf;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

fn digest(bytes: &[u8]) -> Result<Digest> {
    bytes
        .try_into()
        .map_err(|_| Error::Invalid(format!("a digest is 32 bytes, not {}", bytes.len())))
}

fn root_hash(root: &Digest, size: u64) -> RootHash<Sha256> {
    RootHash::new((*root).into(), size)
}

fn hashes(bytes: &[u8]) -> Vec<Digest> {
    bytes
        .chunks(32)
        .filter_map(|chunk| chunk.try_into().ok())
        .collect()
}

/// The path from one leaf to the root of a tree of `size` leaves: the sibling hashes,
/// lowest first (RFC 9162 §2.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionPath {
    /// The leaf's index.
    pub index: u64,
    /// The tree's size.
    pub size: u64,
    /// The sibling hashes, hex, lowest first.
    #[serde(with = "hex_digests")]
    pub hashes: Vec<Digest>,
}

impl InclusionPath {
    /// Whether `leaf` (its bytes) lies at `index` of the tree of `size` leaves whose root
    /// is `root`.
    pub fn verify(&self, leaf: &[u8], root: &Digest) -> Result<()> {
        let bytes: Vec<u8> = self.hashes.iter().flatten().copied().collect();
        let proof = InclusionProof::<Sha256>::try_from_bytes(bytes)
            .map_err(|error| Error::Invalid(format!("inclusion proof: {error}")))?;
        root_hash(root, self.size)
            .verify_inclusion(&leaf, self.index, &proof)
            .map_err(|error| {
                Error::Invalid(format!(
                    "leaf {} of {} is not under root {}: {error}",
                    self.index,
                    self.size,
                    hex::encode(root)
                ))
            })
    }
}

/// An hour's events in their fixed order (by `event_id`, then payload hash, then
/// attributes hash; identical copies once, differing copies each), and its tree.
pub struct HourTree {
    leaves: Vec<EventLeaf>,
    tree: MemoryBackedTree<Sha256, Vec<u8>>,
}

impl HourTree {
    /// The tree over `leaves` (in any order, with repeats).
    pub fn new(leaves: impl IntoIterator<Item = EventLeaf>) -> Self {
        let mut leaves: Vec<EventLeaf> = leaves.into_iter().collect();
        leaves.sort_unstable();
        leaves.dedup();
        let mut tree = MemoryBackedTree::new();
        for leaf in &leaves {
            tree.push(leaf.bytes());
        }
        HourTree { leaves, tree }
    }

    /// The leaves, in the tree's order.
    pub fn leaves(&self) -> &[EventLeaf] {
        &self.leaves
    }

    /// The root (`SHA-256` of nothing for an empty hour, as RFC 6962 defines it).
    pub fn root(&self) -> Digest {
        (*self.tree.root().as_bytes()).into()
    }

    /// The inclusion paths of every leaf of `event_id` (more than one when archived
    /// copies differ).
    pub fn prove(&self, event_id: &str) -> Vec<(EventLeaf, InclusionPath)> {
        let start = self
            .leaves
            .partition_point(|leaf| leaf.event_id.as_str() < event_id);
        self.leaves[start..]
            .iter()
            .enumerate()
            .take_while(|(_, leaf)| leaf.event_id == event_id)
            .map(|(offset, leaf)| {
                let index = start + offset;
                let proof = self.tree.prove_inclusion(index);
                (
                    leaf.clone(),
                    InclusionPath {
                        index: index as u64,
                        size: self.leaves.len() as u64,
                        hashes: hashes(proof.as_bytes()),
                    },
                )
            })
            .collect()
    }
}

/// The append-only log: one leaf per sealed hour (or re-seal), in sealing order.
#[derive(Default)]
pub struct LogTree {
    tree: MemoryBackedTree<Sha256, Vec<u8>>,
}

impl LogTree {
    /// A log holding `leaves`, in order.
    pub fn new(leaves: impl IntoIterator<Item = Vec<u8>>) -> Self {
        let mut tree = MemoryBackedTree::new();
        for leaf in leaves {
            tree.push(leaf);
        }
        LogTree { tree }
    }

    /// Appends one leaf.
    pub fn push(&mut self, leaf: Vec<u8>) {
        self.tree.push(leaf);
    }

    /// How many leaves the log holds.
    pub fn size(&self) -> u64 {
        self.tree.len()
    }

    /// The root over every leaf.
    pub fn root(&self) -> Digest {
        (*self.tree.root().as_bytes()).into()
    }

    /// The inclusion path of leaf `index` in the whole log.
    pub fn prove_inclusion(&self, index: u64) -> Result<InclusionPath> {
        let size = self.size();
        if index >= size {
            return Err(Error::Invalid(format!(
                "leaf {index} is not in a log of {size}"
            )));
        }
        let proof = self.tree.prove_inclusion(index as usize);
        Ok(InclusionPath {
            index,
            size,
            hashes: hashes(proof.as_bytes()),
        })
    }

    /// The proof that the log's first `old_size` leaves are the log of that size
    /// (RFC 9162 §2.1.4).
    pub fn prove_consistency(&self, old_size: u64) -> Result<Vec<Digest>> {
        let size = self.size();
        if old_size == 0 || old_size > size {
            return Err(Error::Invalid(format!(
                "no consistency proof from {old_size} to {size} leaves"
            )));
        }
        let proof = self.tree.prove_consistency((size - old_size) as usize);
        Ok(hashes(proof.as_bytes()))
    }
}

/// Whether the log of `old_size` leaves with root `old_root` is a prefix of the log of
/// `new_size` leaves with root `new_root`, by `proof`.
pub fn verify_consistency(
    old_size: u64,
    old_root: &Digest,
    new_size: u64,
    new_root: &Digest,
    proof: &[Digest],
) -> Result<()> {
    if old_size == new_size {
        return if old_root == new_root && proof.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "two logs of {old_size} leaves with different roots"
            )))
        };
    }
    let bytes: Vec<u8> = proof.iter().flatten().copied().collect();
    let proof = ConsistencyProof::<Sha256>::try_from_bytes(bytes)
        .map_err(|error| Error::Invalid(format!("consistency proof: {error}")))?;
    root_hash(new_root, new_size)
        .verify_consistency(&root_hash(old_root, old_size), &proof)
        .map_err(|error| {
            Error::Invalid(format!(
                "the log of {old_size} leaves is not a prefix of the log of {new_size}: {error}"
            ))
        })
}

/// Digests as lowercase hex strings in JSON.
pub(crate) mod hex_digests {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Digest;

    pub(crate) fn serialize<S: Serializer>(
        digests: &[Digest],
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_seq(digests.iter().map(hex::encode))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Vec<Digest>, D::Error> {
        let texts: Vec<String> = Vec::deserialize(deserializer)?;
        texts
            .iter()
            .map(|text| {
                let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
                super::digest(&bytes).map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf::tests::record;

    /// The leaves of the RFC 6962 test vectors (certificate-transparency's merkle tests).
    const VECTOR_LEAVES: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];

    #[test]
    fn roots_match_the_rfc_6962_test_vectors() {
        let log = LogTree::new(VECTOR_LEAVES.iter().map(|leaf| leaf.to_vec()));
        assert_eq!(
            hex::encode(log.root()),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
        let one = LogTree::new([VECTOR_LEAVES[0].to_vec()]);
        assert_eq!(
            hex::encode(one.root()),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let empty = LogTree::default();
        assert_eq!(
            hex::encode(empty.root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "the empty tree's root is SHA-256 of nothing"
        );
    }

    #[test]
    fn every_leaf_has_a_path_to_the_root_and_no_other_leaf_uses_it() {
        for size in 1..=9u64 {
            let log = LogTree::new((0..size).map(|index| vec![index as u8; 3]));
            let root = log.root();
            for index in 0..size {
                let path = log.prove_inclusion(index).expect("path");
                path.verify(&[index as u8; 3], &root).expect("verifies");
                assert!(path.verify(&[index as u8 + 1; 3], &root).is_err());
                let mut wrong = path.clone();
                wrong.index = (index + 1) % size;
                if size > 1 {
                    assert!(
                        wrong.verify(&[index as u8; 3], &root).is_err(),
                        "{size}/{index}"
                    );
                }
                if let Some(first) = path.hashes.first() {
                    let mut altered = path.clone();
                    altered.hashes[0] = [first[0] ^ 1; 32];
                    assert!(altered.verify(&[index as u8; 3], &root).is_err());
                }
            }
            assert!(log.prove_inclusion(size).is_err());
        }
    }

    #[test]
    fn an_extended_log_is_consistent_with_its_prefix_and_a_rewritten_one_is_not() {
        let leaves: Vec<Vec<u8>> = (0..11u8).map(|n| vec![n]).collect();
        let full = LogTree::new(leaves.clone());
        for old_size in 1..=11u64 {
            let old = LogTree::new(leaves[..old_size as usize].to_vec());
            let proof = full.prove_consistency(old_size).expect("proof");
            verify_consistency(old_size, &old.root(), 11, &full.root(), &proof)
                .expect("consistent");
            // A log whose old part was rewritten.
            let mut rewritten = leaves.clone();
            rewritten[0] = vec![99];
            let forged = LogTree::new(rewritten);
            let forged_proof = forged.prove_consistency(old_size).expect("proof");
            assert!(
                verify_consistency(old_size, &old.root(), 11, &forged.root(), &forged_proof)
                    .is_err(),
                "{old_size}"
            );
        }
        assert!(full.prove_consistency(0).is_err());
        assert!(full.prove_consistency(12).is_err());
        assert!(verify_consistency(3, &[0; 32], 3, &[1; 32], &[]).is_err());
    }

    #[test]
    fn an_hours_events_are_ordered_deduplicated_and_each_copy_provable() {
        let a = EventLeaf::of(&record("a", "1", &[]));
        let b = EventLeaf::of(&record("b", "2", &[]));
        let b_forged = EventLeaf::of(&record("b", "2 forged", &[]));
        let c = EventLeaf::of(&record("c", "3", &[]));
        let tree = HourTree::new([c.clone(), b.clone(), a.clone(), b.clone(), b_forged.clone()]);
        assert_eq!(
            tree.leaves().len(),
            4,
            "an identical copy once, a differing one apart"
        );
        assert_eq!(tree.leaves()[0], a);
        let again = HourTree::new([a.clone(), b_forged.clone(), b.clone(), c.clone()]);
        assert_eq!(
            again.root(),
            tree.root(),
            "the order does not depend on arrival"
        );
        let paths = tree.prove("b");
        assert_eq!(paths.len(), 2, "both copies of b");
        for (leaf, path) in &paths {
            path.verify(&leaf.bytes(), &tree.root()).expect("verifies");
        }
        assert!(tree.prove("z").is_empty());
        let (leaf, path) = &tree.prove("c")[0];
        let json = serde_json::to_string(path).expect("json");
        let back: InclusionPath = serde_json::from_str(&json).expect("parses");
        back.verify(&leaf.bytes(), &tree.root())
            .expect("round trip");
    }
}
