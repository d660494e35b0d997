//! Table-driven tests of the authorization rules, with the tricky cases spelled out.

use proptest::prelude::*;

use super::*;
use crate::ids::{ApiKeyId, AppIdentity, DeviceIdentity, ResourceId};

const D: &str = "app.example.com";

fn device(domain: &str, id: &str) -> Identity {
    Identity::Device(DeviceIdentity {
        domain: Domain::parse(domain).unwrap(),
        resource: ResourceId::parse(id).unwrap(),
    })
}

fn app(domain: &str) -> Identity {
    Identity::Application(AppIdentity {
        domain: Domain::parse(domain).unwrap(),
        api_key_id: ApiKeyId::parse("k1").unwrap(),
    })
}

/// `Ok(())` for allow, `Err(reason)` for deny.
type Want = Result<(), DenyReason>;
const OK: Want = Ok(());
use DenyReason::{Malformed, NoTopicRights, NotOwnTopic, OutsideTenant, Reserved};

fn publish(identity: &Identity, topic: &str) -> Want {
    match authorize_publish(identity, topic) {
        Decision::Allow(_) => Ok(()),
        Decision::Deny(r) => Err(r),
    }
}

fn subscribe(identity: &Identity, filter: &str) -> Want {
    match authorize_subscribe(identity, filter) {
        Decision::Allow(_) => Ok(()),
        Decision::Deny(r) => Err(r),
    }
}

#[test]
fn device_publish() {
    let dev = device(D, "id");
    let cases: &[(&str, Want)] = &[
        ("app.example.com/resources/id/events", OK),
        ("app.example.com/resources/id/events/extra", Err(NotOwnTopic)),
        ("app.example.com/resources/id/commands", Err(NotOwnTopic)),
        ("app.example.com/resources/other/events", Err(NotOwnTopic)),
        ("app.example.com/resources/ID/events", Err(NotOwnTopic)),
        ("app.example.com/resources/id", Err(NotOwnTopic)),
        ("app.example.com//resources/id/events", Err(NotOwnTopic)),
        ("app.example.com/resources//id/events", Err(NotOwnTopic)),
        ("app.example.com/resources/id/events/", Err(NotOwnTopic)),
        ("app.example.com/resources/ïd/events", Err(NotOwnTopic)),
        ("app.example.com.evil/resources/id/events", Err(OutsideTenant)),
        ("example.com/resources/id/events", Err(OutsideTenant)),
        ("other.com/resources/id/events", Err(OutsideTenant)),
        ("APP.example.com/resources/id/events", Err(OutsideTenant)),
        ("/app.example.com/resources/id/events", Err(OutsideTenant)),
        ("resources/id/events", Err(OutsideTenant)),
        ("app.example.com/resources/+/events", Err(Malformed)),
        ("app.example.com/resources/id/#", Err(Malformed)),
        ("+/resources/id/events", Err(Malformed)),
        ("app.example.com/resources/id/events\0", Err(Malformed)),
        ("", Err(Malformed)),
        ("$SYS/broker/load", Err(Reserved)),
        ("$share/g/app.example.com/resources/id/events", Err(Reserved)),
    ];
    for (topic, want) in cases {
        assert_eq!(publish(&dev, topic), *want, "{topic:?}");
    }
}

#[test]
fn device_subscribe() {
    let dev = device(D, "id");
    let cases: &[(&str, Want)] = &[
        ("app.example.com/resources/id/commands", OK),
        ("app.example.com/resources/id/events", Err(NotOwnTopic)),
        ("app.example.com/resources/id/commands/extra", Err(NotOwnTopic)),
        ("app.example.com/resources/id/+", Err(NotOwnTopic)),
        ("app.example.com/resources/id/#", Err(NotOwnTopic)),
        ("app.example.com/resources/+/commands", Err(NotOwnTopic)),
        ("app.example.com/#", Err(NotOwnTopic)),
        ("app.example.com/resources/other/commands", Err(NotOwnTopic)),
        ("$share/g/app.example.com/resources/id/commands", Err(NotOwnTopic)),
        ("+/resources/id/commands", Err(OutsideTenant)),
        ("#", Err(OutsideTenant)),
        ("app.example.com.evil/resources/id/commands", Err(OutsideTenant)),
        ("app.example.co/resources/id/commands", Err(OutsideTenant)),
        ("app.example.com/resources/id/commands#", Err(Malformed)),
        ("$SYS/#", Err(Reserved)),
        ("", Err(Malformed)),
    ];
    for (filter, want) in cases {
        assert_eq!(subscribe(&dev, filter), *want, "{filter:?}");
    }
}

#[test]
fn application_publish() {
    let a = app(D);
    let cases: &[(&str, Want)] = &[
        ("app.example.com/resources/x/commands", OK),
        ("app.example.com/resources/x/events", OK),
        ("app.example.com/anything/at/all", OK),
        ("app.example.com//empty/levels", OK),
        ("app.example.com/ünïcødé/тема", OK),
        ("app.example.com", Err(OutsideTenant)),
        ("app.example.com/", Err(OutsideTenant)),
        ("app.example.com.evil/resources/x/events", Err(OutsideTenant)),
        ("evil.app.example.com/x", Err(OutsideTenant)),
        ("example.com/x", Err(OutsideTenant)),
        ("other.com/resources/x/events", Err(OutsideTenant)),
        ("x", Err(OutsideTenant)),
        ("app.example.com/+", Err(Malformed)),
        ("app.example.com/#", Err(Malformed)),
        ("$SYS/broker/clients", Err(Reserved)),
        ("$SYS", Err(Reserved)),
        ("$other/x", Err(Reserved)),
    ];
    for (topic, want) in cases {
        assert_eq!(publish(&a, topic), *want, "{topic:?}");
    }
}

#[test]
fn application_subscribe() {
    let a = app(D);
    let cases: &[(&str, Want)] = &[
        ("app.example.com/#", OK),
        ("app.example.com/+", OK),
        ("app.example.com/resources/+/events", OK),
        ("app.example.com/resources/x/#", OK),
        ("app.example.com/+/+/+", OK),
        ("app.example.com//x", OK),
        ("app.example.com/ü/#", OK),
        ("$share/g/app.example.com/resources/+/events", OK),
        ("$share/group-1/app.example.com/#", OK),
        ("$SYS/#", OK),
        ("$SYS/broker/+", OK),
        ("$SYS", OK),
        ("#", Err(OutsideTenant)),
        ("+/#", Err(OutsideTenant)),
        ("+/resources/x/events", Err(OutsideTenant)),
        ("+", Err(OutsideTenant)),
        ("app.example.com", Err(OutsideTenant)),
        ("app.example.com/", Err(OutsideTenant)),
        ("app.example.com.evil/#", Err(OutsideTenant)),
        ("app.example.co/#", Err(OutsideTenant)),
        ("example.com/#", Err(OutsideTenant)),
        ("$share/g/#", Err(OutsideTenant)),
        ("$share/g/other.com/#", Err(OutsideTenant)),
        ("$share/g/+/resources/x/events", Err(OutsideTenant)),
        ("$share/g/$SYS/#", Err(Reserved)),
        ("$SYSTEM/#", Err(Reserved)),
        ("$other/#", Err(Reserved)),
        ("$share//app.example.com/#", Err(Malformed)),
        ("$share/g", Err(Malformed)),
        ("$share/g/", Err(Malformed)),
        ("$share/g#/app.example.com/#", Err(Malformed)),
        ("app.example.com/#/x", Err(Malformed)),
        ("app.example.com/x+", Err(Malformed)),
        ("app.example.com/x\0", Err(Malformed)),
        ("", Err(Malformed)),
    ];
    for (filter, want) in cases {
        assert_eq!(subscribe(&a, filter), *want, "{filter:?}");
    }
}

#[test]
fn anonymous_and_admin() {
    let anon = Identity::Anonymous;
    let cases: &[(&str, Want, Want)] = &[
        // (topic or filter, publish, subscribe)
        ("test/topic", OK, OK),
        ("app.example.com/resources/x/events", OK, OK),
        ("#", Err(Malformed), OK),
        ("$share/g/test/x", Err(Reserved), OK),
        ("$SYS/#", Err(Malformed), OK),
        ("$SYS/broker", Err(Reserved), OK),
        ("$other", Err(Reserved), Err(Reserved)),
    ];
    for (s, want_pub, want_sub) in cases {
        assert_eq!(publish(&anon, s), *want_pub, "publish {s:?}");
        assert_eq!(subscribe(&anon, s), *want_sub, "subscribe {s:?}");
        assert!(publish(&Identity::Admin, s).is_err(), "admin {s:?}");
        assert!(subscribe(&Identity::Admin, s).is_err(), "admin {s:?}");
    }
    assert_eq!(publish(&Identity::Admin, "a/b"), Err(NoTopicRights));
    assert_eq!(subscribe(&Identity::Admin, "#"), Err(NoTopicRights));
}

#[test]
fn allow_carries_the_routing_target() {
    let dev = device(D, "id");
    match authorize_publish(&dev, "app.example.com/resources/id/events") {
        Decision::Allow(PublishTarget::Tenant(t)) => {
            assert_eq!(t.domain().as_str(), D);
            assert_eq!(t.relative(), "resources/id/events");
        }
        other => panic!("{other:?}"),
    }
    match authorize_subscribe(&app(D), "$share/g/app.example.com/a/#") {
        Decision::Allow(SubscribeTarget::Tenant(f)) => {
            assert_eq!(f.share_group(), Some("g"));
            assert_eq!(f.relative(), "a/#");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        authorize_subscribe(&app(D), "$SYS/broker/#"),
        Decision::Allow(SubscribeTarget::Sys {
            tenant: Some(Domain::parse(D).unwrap()),
            filter: "$SYS/broker/#".to_owned()
        })
    );
    assert_eq!(
        authorize_subscribe(&Identity::Anonymous, "$share/g/a/+"),
        Decision::Allow(SubscribeTarget::Anonymous { share_group: Some("g".to_owned()), filter: "a/+".to_owned() })
    );
    assert!(authorize_publish(&Identity::Anonymous, "a").is_allowed());
    assert!(!authorize_publish(&Identity::Admin, "a").is_allowed());
}

/// Another tenant whose name extends, prefixes or contains ours never gets in.
#[test]
fn lookalike_tenants_are_isolated() {
    let topic = "app.example.com/resources/id/events";
    for other in
        ["app.example.co", "app.example.com.evil", "example.com", "com", "app", "pp.example.com", "xapp.example.com"]
    {
        assert_eq!(publish(&app(other), topic), Err(OutsideTenant), "{other}");
        assert_eq!(publish(&device(other, "id"), topic), Err(OutsideTenant), "{other}");
        assert_eq!(subscribe(&app(other), "app.example.com/#"), Err(OutsideTenant), "{other}");
    }
}

proptest! {
    #[test]
    fn a_device_reaches_only_its_own_channels(
        id in "[A-Za-z0-9._:-]{1,40}".prop_filter("dot segments", |s| s != "." && s != ".."),
        other in "[A-Za-z0-9._:-]{1,40}",
    ) {
        let dev = device(D, &id);
        let own_events = format!("{D}/resources/{id}/events");
        let own_commands = format!("{D}/resources/{id}/commands");
        prop_assert!(authorize_publish(&dev, &own_events).is_allowed());
        prop_assert!(authorize_subscribe(&dev, &own_commands).is_allowed());
        prop_assert!(!authorize_publish(&dev, &own_commands).is_allowed());
        prop_assert!(!authorize_subscribe(&dev, &own_events).is_allowed());
        if other != id {
            let theirs = format!("{D}/resources/{other}/events");
            prop_assert!(!authorize_publish(&dev, &theirs).is_allowed());
        }
    }

    #[test]
    fn an_application_never_leaves_its_domain(filter in "[a-z.+#/$]{0,30}") {
        if let Decision::Allow(target) = authorize_subscribe(&app(D), &filter) {
            match target {
                SubscribeTarget::Tenant(f) => prop_assert_eq!(f.domain().as_str(), D),
                SubscribeTarget::Sys { .. } => prop_assert!(filter.starts_with("$SYS")),
                SubscribeTarget::Anonymous { .. } => prop_assert!(false, "anonymous target"),
            }
        }
        if let Decision::Allow(PublishTarget::Tenant(t)) = authorize_publish(&app(D), &filter) {
            prop_assert!(filter.starts_with("app.example.com/"));
            prop_assert_eq!(t.full(), filter);
        }
    }
}
