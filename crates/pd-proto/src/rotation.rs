//! Key-rotation proofs: what a node keeps of every accepted key rotation and serves in
//! lookup answers, and the checks that let a reader who remembered an older key of a user
//! tell a legitimate rotation from an impersonation.
//!
//! A proof is the rotation envelope (signed by the key it replaces, purpose `rotate`), the
//! new key's countersignature over the same payload (purpose `rotate-accept`), and the key
//! it replaces, named so that the proof verifies on its own. A chain of proofs, oldest
//! first, links keys: each proof starts from the key the previous one introduced, and the
//! last one ends at the account's current key.

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::keys::{PublicKey, Signature};
use crate::records::Rotation;
use crate::signed::{Signed, SignedError};

/// Most rotation proofs a lookup answer carries (the most recent ones). A longer chain is
/// refused by [`verify_rotation_chain`].
pub const MAX_ROTATION_PROOFS: usize = 16;

/// One accepted key rotation, as a node keeps it and serves it in lookup answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RotationProof {
    /// The key the rotation replaced; `rotation` is signed by it.
    pub old_key: PublicKey,
    /// The rotation, signed by `old_key` (purpose `rotate`); its payload names the new key.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::SignedEnvelope))]
    pub rotation: Signed<Rotation>,
    /// The new key's signature over the same payload (purpose `rotate-accept`).
    pub new_key_signature: Signature,
}

/// Why one rotation proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The rotation is malformed, about another address, or not signed by the old key.
    #[error("the rotation is not signed by the old key for this address: {0}")]
    Rotation(SignedError),
    /// The new key's countersignature does not verify.
    #[error("the new key's countersignature does not verify: {0}")]
    Countersignature(SignedError),
    /// The rotation names the key it replaces as the new key.
    #[error("the new key is the old key")]
    SameKey,
}

/// Why a chain of rotation proofs does not link two keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// A proof does not verify on its own.
    #[error("rotation {index}: {error}")]
    Proof {
        /// Position of the proof in the chain (0 = oldest).
        index: usize,
        /// What is wrong with it.
        error: ProofError,
    },
    /// A proof starts from another key than the one the previous proof introduced.
    #[error("rotation {index} does not start from the key rotation {} introduced", .index - 1)]
    Broken {
        /// Position of the proof in the chain.
        index: usize,
    },
    /// A proof is not dated after the previous one (`seq` must grow).
    #[error("rotation {index} is not dated after rotation {}", .index - 1)]
    OutOfOrder {
        /// Position of the proof in the chain.
        index: usize,
    },
    /// The last proof ends at another key than the current one.
    #[error("the last rotation does not end at the current key")]
    WrongCurrentKey,
    /// The chain is longer than [`MAX_ROTATION_PROOFS`].
    #[error("{0} rotations, more than the {MAX_ROTATION_PROOFS} allowed")]
    TooLong(usize),
    /// The chain is valid, but the known key is neither the current key nor a key it
    /// replaced.
    #[error("the known key is not linked to the current key by the rotations")]
    Unlinked,
}

impl RotationProof {
    /// The proof of a rotation accepted with `old_key` as the account key: what a node
    /// keeps of a `RotateRequest`.
    pub fn new(
        old_key: PublicKey,
        rotation: Signed<Rotation>,
        new_key_signature: Signature,
    ) -> Self {
        Self {
            old_key,
            rotation,
            new_key_signature,
        }
    }

    /// Verifies the proof on its own for `address`: the rotation is about `address` and
    /// signed by `old_key`, the countersignature verifies under the rotation's new key, and
    /// the new key differs from the old one. Returns the verified rotation.
    pub fn verify(&self, address: &Address) -> Result<Rotation, ProofError> {
        let rotation = self
            .rotation
            .verify(&self.old_key, address)
            .map_err(ProofError::Rotation)?;
        self.rotation
            .verify_countersignature(&rotation.new_key, address, &self.new_key_signature)
            .map_err(ProofError::Countersignature)?;
        if rotation.new_key == self.old_key {
            return Err(ProofError::SameKey);
        }
        Ok(rotation)
    }
}

/// Verifies that `chain` (oldest first) is a history of `address`'s key that ends at
/// `current`: at most [`MAX_ROTATION_PROOFS`] proofs, each verifying on its own
/// ([`RotationProof::verify`]), each starting from the key the previous one introduced and
/// dated after it, the last one introducing `current`. An empty chain is valid.
pub fn verify_rotation_chain(
    address: &Address,
    chain: &[RotationProof],
    current: &PublicKey,
) -> Result<(), RotationError> {
    if chain.len() > MAX_ROTATION_PROOFS {
        return Err(RotationError::TooLong(chain.len()));
    }
    let mut previous: Option<Rotation> = None;
    for (index, proof) in chain.iter().enumerate() {
        if let Some(prev) = &previous
            && proof.old_key != prev.new_key
        {
            return Err(RotationError::Broken { index });
        }
        let rotation = proof
            .verify(address)
            .map_err(|error| RotationError::Proof { index, error })?;
        if let Some(prev) = &previous
            && rotation.seq <= prev.seq
        {
            return Err(RotationError::OutOfOrder { index });
        }
        previous = Some(rotation);
    }
    match previous {
        Some(last) if last.new_key != *current => Err(RotationError::WrongCurrentKey),
        _ => Ok(()),
    }
}

/// Whether `chain` links `known`, a key of `address` the reader saw earlier, to `current`.
/// The whole chain must verify ([`verify_rotation_chain`]); then `known` must be `current`
/// itself or a key one of the proofs replaced. Returns the number of rotations from
/// `known` to `current` (0 when `known` is `current`).
pub fn link_known_key(
    address: &Address,
    known: &PublicKey,
    chain: &[RotationProof],
    current: &PublicKey,
) -> Result<usize, RotationError> {
    verify_rotation_chain(address, chain, current)?;
    if known == current {
        return Ok(0);
    }
    chain
        .iter()
        .rposition(|proof| proof.old_key == *known)
        .map(|index| chain.len() - index)
        .ok_or(RotationError::Unlinked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    const SEQ: u64 = 1_767_225_600_000_000;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed(&[n; 32])
    }

    /// A proof of `address` rotating from `old` to `new` at `seq`.
    fn proof(address: &Address, old: &SecretKey, new: &SecretKey, seq: u64) -> RotationProof {
        let rotation = Signed::sign(
            old,
            &Rotation {
                address: address.clone(),
                new_key: new.public(),
                seq,
            },
        );
        let countersignature = rotation.countersign(new, address);
        RotationProof::new(old.public(), rotation, countersignature)
    }

    /// Keys 1 → 2 → 3 → 4 of alice, one rotation a second.
    fn chain(address: &Address) -> Vec<RotationProof> {
        (1..4)
            .map(|i| {
                proof(
                    address,
                    &key(i),
                    &key(i + 1),
                    SEQ + u64::from(i) * 1_000_000,
                )
            })
            .collect()
    }

    #[test]
    fn a_valid_chain_links_every_earlier_key_to_the_current_one() {
        let alice = addr("alice@example.com");
        let chain = chain(&alice);
        let current = key(4).public();
        verify_rotation_chain(&alice, &chain, &current).unwrap();
        for (known, steps) in [(1, 3), (2, 2), (3, 1), (4, 0)] {
            assert_eq!(
                link_known_key(&alice, &key(known).public(), &chain, &current),
                Ok(steps),
                "from key {known}"
            );
        }
        // A suffix of the history is a valid chain too (a node keeps only the latest).
        assert_eq!(
            link_known_key(&alice, &key(2).public(), &chain[1..], &current),
            Ok(2)
        );
        assert_eq!(
            link_known_key(&alice, &key(1).public(), &chain[1..], &current),
            Err(RotationError::Unlinked)
        );
    }

    #[test]
    fn without_rotations_only_the_current_key_is_linked() {
        let alice = addr("alice@example.com");
        let current = key(1).public();
        verify_rotation_chain(&alice, &[], &current).unwrap();
        assert_eq!(link_known_key(&alice, &current, &[], &current), Ok(0));
        assert_eq!(
            link_known_key(&alice, &key(9).public(), &[], &current),
            Err(RotationError::Unlinked)
        );
    }

    #[test]
    fn an_unknown_key_is_not_linked() {
        let alice = addr("alice@example.com");
        assert_eq!(
            link_known_key(&alice, &key(9).public(), &chain(&alice), &key(4).public()),
            Err(RotationError::Unlinked)
        );
    }

    #[test]
    fn a_chain_must_end_at_the_current_key() {
        let alice = addr("alice@example.com");
        assert_eq!(
            verify_rotation_chain(&alice, &chain(&alice), &key(3).public()),
            Err(RotationError::WrongCurrentKey)
        );
        // An impersonator's key, with the genuine history in front of it.
        assert_eq!(
            link_known_key(&alice, &key(1).public(), &chain(&alice), &key(9).public()),
            Err(RotationError::WrongCurrentKey)
        );
    }

    #[test]
    fn a_forged_rotation_is_refused() {
        let alice = addr("alice@example.com");
        // The impersonator signs a rotation from alice's known key 1 with its own key 9.
        let mut forged = proof(&alice, &key(9), &key(10), SEQ);
        forged.old_key = key(1).public();
        assert!(matches!(
            link_known_key(&alice, &key(1).public(), &[forged], &key(10).public()),
            Err(RotationError::Proof {
                index: 0,
                error: ProofError::Rotation(SignedError::Signature(_))
            })
        ));
        // Signed by the old key, but the new key never countersigned.
        let mut unaccepted = proof(&alice, &key(1), &key(2), SEQ);
        unaccepted.new_key_signature = proof(&alice, &key(1), &key(3), SEQ).new_key_signature;
        assert!(matches!(
            verify_rotation_chain(&alice, &[unaccepted], &key(2).public()),
            Err(RotationError::Proof {
                index: 0,
                error: ProofError::Countersignature(_)
            })
        ));
        // A countersignature is not a rotation signature (purposes differ).
        let mut swapped = proof(&alice, &key(1), &key(2), SEQ);
        swapped.new_key_signature = *swapped.rotation.signature();
        assert!(verify_rotation_chain(&alice, &[swapped], &key(2).public()).is_err());
        // A rotation to the same key proves nothing.
        assert_eq!(
            verify_rotation_chain(
                &alice,
                &[proof(&alice, &key(1), &key(1), SEQ)],
                &key(1).public()
            ),
            Err(RotationError::Proof {
                index: 0,
                error: ProofError::SameKey
            })
        );
    }

    #[test]
    fn a_chain_out_of_order_or_with_a_gap_is_refused() {
        let alice = addr("alice@example.com");
        let chain = chain(&alice);
        let mut reversed = chain.clone();
        reversed.reverse();
        assert_eq!(
            verify_rotation_chain(&alice, &reversed, &key(4).public()),
            Err(RotationError::Broken { index: 1 })
        );
        let gap = [chain[0].clone(), chain[2].clone()];
        assert_eq!(
            verify_rotation_chain(&alice, &gap, &key(4).public()),
            Err(RotationError::Broken { index: 1 })
        );
        // Linked keys, but the second rotation is dated before the first.
        let backdated = [
            proof(&alice, &key(1), &key(2), SEQ + 10),
            proof(&alice, &key(2), &key(3), SEQ + 10),
        ];
        assert_eq!(
            verify_rotation_chain(&alice, &backdated, &key(3).public()),
            Err(RotationError::OutOfOrder { index: 1 })
        );
    }

    #[test]
    fn a_rotation_of_another_address_is_refused() {
        let alice = addr("alice@example.com");
        let mallory = addr("alice@example.net");
        let chain = chain(&mallory);
        assert!(matches!(
            verify_rotation_chain(&alice, &chain, &key(4).public()),
            Err(RotationError::Proof {
                index: 0,
                error: ProofError::Rotation(SignedError::AddressMismatch { .. })
            })
        ));
        // Nor does a countersignature made for another address carry over.
        let mut mixed = proof(&alice, &key(1), &key(2), SEQ);
        mixed.new_key_signature = mixed.rotation.countersign(&key(2), &mallory);
        assert!(matches!(
            verify_rotation_chain(&alice, &[mixed], &key(2).public()),
            Err(RotationError::Proof {
                index: 0,
                error: ProofError::Countersignature(_)
            })
        ));
    }

    #[test]
    fn chains_longer_than_the_cap_are_refused() {
        let alice = addr("alice@example.com");
        let long: Vec<RotationProof> = (1..=17)
            .map(|i| proof(&alice, &key(i), &key(i + 1), SEQ + u64::from(i)))
            .collect();
        assert_eq!(
            verify_rotation_chain(&alice, &long, &key(18).public()),
            Err(RotationError::TooLong(17))
        );
        verify_rotation_chain(&alice, &long[1..], &key(18).public()).unwrap();
    }

    #[test]
    fn proofs_round_trip_as_json_and_refuse_unknown_members() {
        let alice = addr("alice@example.com");
        let p = proof(&alice, &key(1), &key(2), SEQ);
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.starts_with("{\"old_key\":"), "{json}");
        let back: RotationProof = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        let mut value = serde_json::to_value(&p).unwrap();
        value["extra"] = serde_json::Value::Bool(true);
        assert!(serde_json::from_value::<RotationProof>(value).is_err());
    }
}
