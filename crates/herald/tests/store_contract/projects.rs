//! Projects, API keys, the admin key, and the store's own answers.

use std::collections::HashSet;
use std::time::Duration;

use herald::domain::{ApiKeyId, ProjectId};
use herald::store::{PageRequest, StoreError};

use crate::support::*;

contract_test!(
    fn projects_are_listed_in_pages_without_duplicates(h) {
        let store = h.store();
        let now = h.now();
        let first = store.list_projects(PageRequest { size: 10, after: None }).await.unwrap();
        assert!(first.items.is_empty() && first.next_after.is_none(), "a fresh store has no projects");
        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(new_project(store, &format!("project {n}"), now).await);
        }
        let created = ids.clone();
        ids.sort();

        let mut listed = Vec::new();
        let mut sizes = Vec::new();
        let mut after = None;
        loop {
            let page = store.list_projects(PageRequest { size: 2, after: after.clone() }).await.unwrap();
            sizes.push(page.items.len());
            listed.extend(page.items.iter().map(|p| p.id));
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
            assert!(sizes.len() < 10, "the listing does not end");
        }
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(listed, ids, "each project once, in id order");

        let project = store.get_project(created[3]).await.unwrap().expect("the project exists");
        assert_eq!((project.id, project.create_time), (created[3], now));
        assert_eq!(project.name.as_str(), "project 3", "ids made in one millisecond need not sort in creation order");
        assert!(store.get_project(ProjectId::generate()).await.unwrap().is_none());
    }
);

contract_test!(
    fn api_keys_are_found_until_revoked(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let other_project = new_project(store, "other", now).await;
        let key = api_key(project, now);
        let key_id = key.id;
        let hash = [7u8; 32];
        store.create_api_key(key, hash).await.unwrap();
        let other_hash = [9u8; 32];
        store.create_api_key(api_key(other_project, now), other_hash).await.unwrap();
        let error = store
            .create_api_key(api_key(ProjectId::generate(), now), [1u8; 32])
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::NotFound), "{error:?}");

        assert_eq!(store.find_api_key(hash).await.unwrap(), Some((key_id, project)));
        assert_eq!(store.find_api_key([8u8; 32]).await.unwrap(), None);
        let later = h.advance(Duration::from_secs(60));
        assert!(
            !store.revoke_api_key(other_project, key_id, later).await.unwrap(),
            "only the key's own project can revoke it"
        );
        assert!(!store.revoke_api_key(project, ApiKeyId::generate(), later).await.unwrap());
        assert_eq!(store.find_api_key(hash).await.unwrap(), Some((key_id, project)));
        assert!(store.revoke_api_key(project, key_id, later).await.unwrap());
        assert_eq!(store.find_api_key(hash).await.unwrap(), None, "a revoked key finds nothing");
        assert!(!store.revoke_api_key(project, key_id, later).await.unwrap(), "already revoked");
        assert!(store.find_api_key(other_hash).await.unwrap().is_some(), "other keys stay");
    }
);

contract_test!(
    fn the_first_admin_key_hash_stays(h) {
        let store = h.store();
        let first = [1u8; 32];
        let second = [2u8; 32];
        assert_eq!(store.init_admin_key_hash(first).await.unwrap(), first);
        assert_eq!(store.init_admin_key_hash(second).await.unwrap(), first);
        assert_eq!(store.init_admin_key_hash(first).await.unwrap(), first);
    }
);

contract_test!(
    fn the_store_answers_pings_and_says_whether_it_is_shared(h) {
        let store = h.store();
        store.ping().await.expect("ping");
        store.ping().await.expect("ping again");
        let expected = h.backend == Backend::Postgres;
        assert_eq!(store.is_shared(), expected, "{:?}", h.backend);
    }
);

contract_test!(
    fn the_admin_key_and_data_outlive_a_restart(h) {
        let now = h.now();
        let project = new_project(h.store(), "acme", now).await;
        h.store().init_admin_key_hash([3u8; 32]).await.unwrap();
        h.restart_after_crash().await;
        let store = h.store();
        assert_eq!(store.init_admin_key_hash([4u8; 32]).await.unwrap(), [3u8; 32]);
        assert!(store.get_project(project).await.unwrap().is_some());
        let ids: HashSet<_> = store
            .list_projects(PageRequest { size: 10, after: None })
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ids, [project].into());
    }
);

contract_test!(
    fn a_closed_store_refuses_calls(h) {
        let store = h.store().clone();
        h.close().await;
        let answer = tokio::time::timeout(Duration::from_secs(10), store.ping()).await;
        let answer = answer.expect("a closed store answers at once");
        assert!(
            matches!(answer, Err(StoreError::Unavailable(_))),
            "{answer:?}"
        );
        let listed = tokio::time::timeout(
            Duration::from_secs(10),
            store.list_projects(PageRequest { size: 1, after: None }),
        )
        .await
        .expect("a closed store answers at once");
        assert!(matches!(listed, Err(StoreError::Unavailable(_))), "{:?}", listed.map(|p| p.items.len()));
    }
);
