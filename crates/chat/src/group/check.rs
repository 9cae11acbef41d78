//! Checking a group member's key the way a two-person conversation checks its peer's: a
//! lookup through this side's own home node (or the stored answer while it cannot be
//! reached), a second lookup past the node's cache when the keys differ, then the known
//! peers (a changed key passes only with a rotation signed by the remembered key).

use pd_client::LookupMode;
use pd_proto::wire::Source;
use pd_proto::{Address, PublicKey};

use crate::account::{Account, Answer, now_secs};
use crate::console::Console;
use crate::contacts::age;
use crate::peer::known::{KeyCheck, KnownPeers};

/// Checks that the key another member gave for `address` (`claimed`) is the key this side's
/// home node vouches for. Returns the checked key, or why it is not accepted (one line). A
/// key remembered for the first time, or after a signed rotation, is said on `console`, as
/// for a two-person conversation.
pub(crate) async fn member_key(
    account: &Account,
    address: &Address,
    claimed: PublicKey,
    console: &mut Console<'_>,
) -> Result<PublicKey, String> {
    let lookup = async |mode| {
        account
            .lookup_or_stored(address, mode)
            .await
            .map_err(|e| format!("could not look {address} up: {}", e.report().0))
    };
    let mut answer = lookup(None).await?;
    if let Answer::Live(found) = &answer
        && *found.public_key() != claimed
        && matches!(found.source(), Source::Cache | Source::Stale)
    {
        answer = lookup(Some(LookupMode::Refresh)).await?;
    }
    let found = answer.lookup();
    let vouched = *found.public_key();
    if let Answer::Stored { contact, why } = &answer {
        console.status(format!(
            "{why}: checked the key of {address} against its record stored {} ago",
            age(contact.fetched_at, now_secs())
        ));
    }
    if vouched != claimed {
        return Err(format!(
            "the key given for {address} ({}) is not the key your home node vouches for ({})",
            claimed.fingerprint(),
            vouched.fingerprint()
        ));
    }
    let known = KnownPeers::new(account.home().clone());
    match known.check(address, &vouched, |old| found.rotated_from(old).is_ok()) {
        Ok(KeyCheck::Known) => Ok(vouched),
        Ok(KeyCheck::FirstContact) => {
            console.status(format!(
                "first contact with {address}: remembering its key {}",
                vouched.fingerprint()
            ));
            Ok(vouched)
        }
        Ok(KeyCheck::Rotated { previous }) => {
            console.status(format!(
                "{address} rotated its key from {} to {} (signed by the old key); remembered",
                previous.fingerprint(),
                vouched.fingerprint()
            ));
            Ok(vouched)
        }
        Ok(KeyCheck::Changed { known }) => Err(format!(
            "the key of {address} has changed: you talked with key {}, its home node now \
             vouches for key {}, with no rotation signed by the old key (see chat trust)",
            known.fingerprint(),
            vouched.fingerprint()
        )),
        Err(e) => Err(e.report().0),
    }
}

/// Takes in an accepted membership change: the key of an `added` member is checked through
/// this side's own home node (its posts are refused until it is), then the user is told.
pub(crate) async fn take_change(
    account: &Account,
    group: &mut super::Group,
    change: &pd_proto::group::GroupChange,
    link: super::LinkId,
    console: &mut Console<'_>,
) {
    if let (pd_proto::group::ChangeKind::Added, Some(key)) = (change.change, change.key) {
        let checked = member_key(account, &change.member, key, console).await;
        if let Err(why) = &checked {
            console.status(format!(
                "cannot check the new member {}: {why}; its lines will be refused",
                change.member
            ));
        }
        group.admit(
            change.member.clone(),
            checked.ok(),
            link,
            change.author.clone(),
        );
    }
    console.status(super::describe_change(change, &group.label()));
}
