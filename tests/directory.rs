//! People listed without a Slack id are found through Slack's profile (users.lookupByEmail) in
//! the background, so their slash commands are recognised; the ack path never calls Slack.

mod common;

use common::*;

#[tokio::test]
async fn a_person_without_a_slack_id_is_found_by_email() {
    let people = tempfile::tempdir().unwrap();
    let file = people.path().join("people.toml");
    let mut text = std::fs::read_to_string(manifest_dir().join("examples/people.toml")).unwrap();
    text.push_str(
        "\n[[people]]\nemail = \"dana@example.com\"\nname = \"Dana NoSlackId\"\ndepartment = \"Platform\"\nmanager = \"bob@example.com\"\n",
    );
    std::fs::write(&file, text).unwrap();
    let path = file.clone();
    let t = spawn_app_with(move |c| c.directory.people_file = Some(path)).await;

    // Slack's documented users.lookupByEmail answer is user W012A3CDE: Dana is now known by it.
    let lookup = eventually(10, "looked up by email", || async {
        t.slack
            .calls_of("users.lookupByEmail")
            .into_iter()
            .find(|c| {
                c.body.to_string().contains("dana%40example.com")
                    || c.body.to_string().contains("dana@example.com")
            })
    })
    .await;
    assert_eq!(
        lookup.authorization.as_deref(),
        Some("Bearer xoxb-test-token")
    );
    // Only people without an id are looked up.
    assert_eq!(t.slack.calls_of("users.lookupByEmail").len(), 1);
    eventually(10, "Dana recognised", || async {
        t.app
            .directory
            .by_chat_id("slack", "W012A3CDE")
            .map(|p| p.email.clone())
    })
    .await;
    let (status, body) = t.command("W012A3CDE", "list", "trig-dana").await;
    assert_eq!(status, 200);
    assert!(
        !body["text"]
            .as_str()
            .unwrap()
            .contains("don't know who you are"),
        "{body}"
    );
}
