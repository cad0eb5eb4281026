//! Event types: the registry's rows, archive and re-create, listing in
//! pages, patches, and the strict-mode switch.

use herald::domain::{EventType, ProjectId};
use herald::store::{CreatedEventType, EventTypePatch, NewEventType, PageRequest};

use crate::support::*;

fn new_type(project: ProjectId, name: &str, schema: Option<&str>, now: herald::domain::Timestamp) -> NewEventType {
    NewEventType {
        project_id: project,
        name: EventType::parse(name).unwrap(),
        description: Some(format!("about {name}")),
        schema: schema.map(str::to_owned),
        now,
    }
}

fn name(text: &str) -> EventType {
    EventType::parse(text).unwrap()
}

contract_test!(
    fn event_types_are_created_once_archived_and_created_again(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let other = new_project(store, "other", now).await;
        let schema = r#"{"type":"object"}"#;
        let created = match store.create_event_type(new_type(project, "order.created", Some(schema), now)).await.unwrap() {
            CreatedEventType::Created(record) => record,
            other => panic!("expected created, got {other:?}"),
        };
        assert_eq!(created.name.as_str(), "order.created");
        assert_eq!(created.schema.as_deref(), Some(schema));
        assert_eq!(created.description.as_deref(), Some("about order.created"));
        assert_eq!((created.create_time, created.update_time, created.archive_time), (now, now, None));
        assert!(matches!(
            store.create_event_type(new_type(project, "order.created", None, now)).await.unwrap(),
            CreatedEventType::Exists
        ));
        assert!(matches!(
            store.create_event_type(new_type(ProjectId::generate(), "order.created", None, now)).await.unwrap(),
            CreatedEventType::ProjectNotFound
        ));
        assert!(store.get_event_type(other, name("order.created")).await.unwrap().is_none(), "projects are apart");

        let later = h.advance(secs(5));
        assert!(store.archive_event_type(project, name("order.created"), later).await.unwrap());
        assert!(!store.archive_event_type(project, name("order.created"), later).await.unwrap(), "archived once");
        let archived = store.get_event_type(project, name("order.created")).await.unwrap().expect("kept");
        assert_eq!(archived.archive_time, Some(later));
        assert!(
            store
                .update_event_type(project, name("order.created"), EventTypePatch::default(), later)
                .await
                .unwrap()
                .is_none(),
            "an archived type is not patched"
        );

        let again = h.advance(secs(5));
        let CreatedEventType::Created(recreated) =
            store.create_event_type(new_type(project, "order.created", None, again)).await.unwrap()
        else {
            panic!("an archived name can be created again");
        };
        assert_eq!((recreated.archive_time, recreated.schema, recreated.create_time), (None, None, again));
    }
);

contract_test!(
    fn event_types_are_listed_by_name_in_pages_hiding_archived_ones(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        for type_name in ["b.two", "a.one", "d.four", "c.three", "e.five"] {
            store.create_event_type(new_type(project, type_name, None, now)).await.unwrap();
        }
        store.archive_event_type(project, name("c.three"), now).await.unwrap();
        let mut listed = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list_event_types(project, PageRequest { size: 2, after: after.clone() }, false)
                .await
                .unwrap();
            listed.extend(page.items.iter().map(|r| r.name.as_str().to_owned()));
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
            assert!(listed.len() < 20, "the listing does not end");
        }
        assert_eq!(listed, ["a.one", "b.two", "d.four", "e.five"]);
        let all = store
            .list_event_types(project, PageRequest { size: 10, after: None }, true)
            .await
            .unwrap();
        let names: Vec<&str> = all.items.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a.one", "b.two", "c.three", "d.four", "e.five"]);
        assert!(all.items[2].archive_time.is_some());
    }
);

contract_test!(
    fn event_type_patches_change_only_the_given_fields(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        store
            .create_event_type(new_type(project, "order.created", Some(r#"{"type":"object"}"#), now))
            .await
            .unwrap();
        let later = h.advance(secs(1));
        let patch = EventTypePatch { description: Some(None), schema: None };
        let patched = store
            .update_event_type(project, name("order.created"), patch, later)
            .await
            .unwrap()
            .expect("exists");
        assert_eq!((patched.description, patched.schema.as_deref()), (None, Some(r#"{"type":"object"}"#)));
        assert_eq!((patched.create_time, patched.update_time), (now, later));
        let patch = EventTypePatch { description: Some(Some("new".into())), schema: Some(Some("{}".into())) };
        store.update_event_type(project, name("order.created"), patch, later).await.unwrap();
        let read = store.get_event_type(project, name("order.created")).await.unwrap().unwrap();
        assert_eq!((read.description.as_deref(), read.schema.as_deref()), (Some("new"), Some("{}")));
        assert!(
            store
                .update_event_type(project, name("order.missing"), EventTypePatch::default(), later)
                .await
                .unwrap()
                .is_none()
        );
    }
);

contract_test!(
    fn strict_mode_is_off_until_switched_on_per_project(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let other = new_project(store, "other", now).await;
        assert!(!store.strict_event_types(project).await.unwrap());
        assert!(store.set_strict_event_types(project, true).await.unwrap());
        assert!(store.strict_event_types(project).await.unwrap());
        assert!(!store.strict_event_types(other).await.unwrap(), "per project");
        assert!(store.set_strict_event_types(project, false).await.unwrap());
        assert!(!store.strict_event_types(project).await.unwrap());
        assert!(!store.set_strict_event_types(ProjectId::generate(), true).await.unwrap(), "no such project");
    }
);
