//! `Mailbox/set` as mailbox management needs it, against Cyrus (pool user `dr5`): create under
//! a parent, rename + move to the top level,
//! (un)subscribe, destroy of a non-empty mailbox refused without `onDestroyRemoveEmails` and
//! removing its emails with it.

use mailsync_jmap_client::*;
use serde_json::Value;

use crate::servers::{Servers, imap_append, message, unique, within};

async fn get_mailbox(client: &Client, account: &AccountId, id: &MailboxId) -> Option<Mailbox> {
    let r = client
        .call(
            Get::<Mailbox>::new(account)
                .ids(vec![id.clone()])
                .properties(["name", "parentId", "role", "isSubscribed"]),
        )
        .await
        .unwrap();
    r.list.into_iter().next()
}

#[tokio::test]
async fn cyrus_mailbox_set_for_management() {
    within(60, async {
        let s = Servers::load();
        let client = s.client("dr5").await;
        let account = client.mail_account_id().unwrap();

        // Leftovers of interrupted runs (the pool user keeps its mailboxes).
        let all = client
            .call(Get::<Mailbox>::new(&account).properties(["name"]))
            .await
            .unwrap();
        let leftovers: Vec<MailboxId> = all
            .list
            .iter()
            .filter(|m| m.name.as_deref().is_some_and(|n| n.starts_with("m15-")))
            .filter_map(|m| m.id.clone())
            .collect();
        let mut set = Set::<Mailbox>::new(&account);
        set.destroy(&leftovers);
        set.on_destroy_remove_emails(true);
        client.call(set).await.unwrap();

        // Create a parent and a child under it.
        let mut set = Set::<Mailbox>::new(&account);
        let p = set.create(Mailbox::new(unique("m15-parent")));
        let c = set.create(Mailbox::new(unique("m15-child")).with_parent(p.reference()));
        let r = client.call(set).await.unwrap();
        let parent = r.created_or_error(&p).unwrap().id.clone().unwrap();
        let child = r.created_or_error(&c).unwrap().id.clone().unwrap();
        assert_eq!(
            get_mailbox(&client, &account, &child)
                .await
                .unwrap()
                .parent_id,
            Some(parent.clone())
        );

        // Rename and move to the top level; unsubscribe, subscribe.
        let new_name = unique("m15-moved");
        let mut set = Set::<Mailbox>::new(&account);
        set.update(
            &child,
            Patch::new()
                .set("name", new_name.clone())
                .set("parentId", Value::Null)
                .set("isSubscribed", false),
        );
        client.call(set).await.unwrap().check().unwrap();
        let m = get_mailbox(&client, &account, &child).await.unwrap();
        assert_eq!(m.name.as_deref(), Some(new_name.as_str()));
        assert_eq!(m.parent_id, None);
        assert_eq!(m.is_subscribed, Some(false));
        let mut set = Set::<Mailbox>::new(&account);
        set.update(&child, Patch::new().set("isSubscribed", true));
        client.call(set).await.unwrap().check().unwrap();
        let m = get_mailbox(&client, &account, &child).await.unwrap();
        assert_eq!(m.is_subscribed, Some(true));

        // A message in it: destroy is refused without onDestroyRemoveEmails...
        let mid = format!("{}@m15.test", unique("mid"));
        imap_append(
            &s,
            "dr5",
            &new_name,
            vec![message("a@x.test", "dr5@x.test", "m15", &mid)],
        )
        .await;
        let q = client
            .call(Query::<Email>::new(&account).filter(EmailFilterCondition::in_mailbox(&child)))
            .await
            .unwrap();
        assert_eq!(q.ids.len(), 1);
        let mut set = Set::<Mailbox>::new(&account);
        set.destroy([&child]);
        let r = client.call(set).await.unwrap();
        assert_eq!(
            r.not_destroyed.get(&child).map(|e| e.kind.clone()),
            Some(SetErrorType::MailboxHasEmail)
        );
        // ... and removes the message with it when asked.
        let mut set = Set::<Mailbox>::new(&account);
        set.destroy([&child, &parent]);
        set.on_destroy_remove_emails(true);
        let r = client.call(set).await.unwrap();
        r.check().unwrap();
        assert!(get_mailbox(&client, &account, &child).await.is_none());
        let g = client
            .call(Get::<Email>::new(&account).ids(q.ids.clone()))
            .await
            .unwrap();
        assert_eq!(g.not_found, q.ids);
    })
    .await;
}
