use clap::{CommandFactory, Parser};
use reqwest::StatusCode;
use serde_json::json;

use super::client::{admin_base, object_url, refusal_text, secret, token_answer, token_url};
use super::*;
use crate::config::{Cli, Command};

fn admin(argv: &[&str]) -> AdminArgs {
    let mut full = vec!["signet", "admin"];
    full.extend_from_slice(argv);
    match Cli::try_parse_from(full).unwrap().command {
        Command::Admin(a) => a,
        other => panic!("{other:?}"),
    }
}

#[test]
fn verbs_kinds_and_global_flags_parse_anywhere() {
    let a = admin(&["client", "list", "--output", "json", "--url", "http://h:1"]);
    assert!(matches!(
        a.command,
        AdminCommand::Client(KindArgs { verb: Verb::List })
    ));
    assert_eq!(a.conn.output, OutputFormat::Json);
    assert_eq!(a.conn.url, "http://h:1");
    let a = admin(&["-o", "json", "api-scopes", "get", "orders.read"]);
    assert!(
        matches!(&a.command, AdminCommand::ApiScope(KindArgs { verb: Verb::Get { id } }) if id == "orders.read")
    );
    assert_eq!(a.conn.output, OutputFormat::Json);
    let a = admin(&["identity-resource", "rm", "x", "--timeout", "5"]);
    assert!(matches!(
        a.command,
        AdminCommand::IdentityResource(KindArgs {
            verb: Verb::Delete { .. }
        })
    ));
    assert_eq!(a.conn.timeout, 5);
    let a = admin(&["api-resource", "update", "-f", "-"]);
    assert!(matches!(
        a.command,
        AdminCommand::ApiResource(KindArgs {
            verb: Verb::Update { .. }
        })
    ));
    let a = admin(&[
        "apply",
        "-f",
        "x.yaml",
        "--dry-run",
        "--client-secret-file",
        "/s",
    ]);
    match a.command {
        AdminCommand::Apply(ap) => assert!(ap.dry_run && !ap.replace_secrets),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.conn.client_secret_file.as_deref(), Some(Path::new("/s")));
    // No flag takes the secret itself.
    let e = Cli::try_parse_from(["signet", "admin", "client", "list", "--client-secret", "x"])
        .unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let e = Cli::try_parse_from(["signet", "admin", "client", "frob"]).unwrap_err();
    assert_eq!(e.exit_code(), 2, "usage errors exit 2");
}

#[test]
fn help_documents_the_exit_codes() {
    let mut cmd = Cli::command();
    let admin = cmd.find_subcommand_mut("admin").unwrap();
    let help = admin.render_long_help().to_string();
    for line in [
        "0  success",
        "2  usage error or invalid file",
        "3  authentication failed",
        "4  cannot reach the server",
        "5  not found",
        "SIGNET_ADMIN_URL",
        "SIGNET_ADMIN_CLIENT_SECRET",
    ] {
        assert!(help.contains(line), "{line:?} not in\n{help}");
    }
    let apply = admin
        .find_subcommand_mut("apply")
        .unwrap()
        .render_long_help()
        .to_string();
    assert!(
        apply.contains("--dry-run") && apply.contains("write-only"),
        "{apply}"
    );
}

#[test]
fn urls_are_normalized_and_checked() {
    assert_eq!(
        admin_base("http://127.0.0.1:8081").unwrap().as_str(),
        "http://127.0.0.1:8081/"
    );
    assert_eq!(
        admin_base("http://h:1/admin/v1/").unwrap().as_str(),
        "http://h:1/"
    );
    assert_eq!(
        admin_base("https://h/signet/").unwrap().as_str(),
        "https://h/signet"
    );
    for bad in [
        "127.0.0.1:8081",
        "ftp://h",
        "http://h/?q=1",
        "",
        "not a url",
    ] {
        let f = admin_base(bad).unwrap_err();
        assert_eq!(f.exit, Exit::Usage, "{bad}");
        assert!(f.message.contains("--url / SIGNET_ADMIN_URL"), "{f:?}");
    }
    assert_eq!(
        token_url(None, "http://127.0.0.1:8080").unwrap().as_str(),
        "http://127.0.0.1:8080/oauth2/token"
    );
    assert_eq!(
        token_url(None, "https://id.example.com/auth/")
            .unwrap()
            .as_str(),
        "https://id.example.com/auth/oauth2/token"
    );
    assert_eq!(
        token_url(Some("https://t.example/tok"), "bogus")
            .unwrap()
            .as_str(),
        "https://t.example/tok"
    );
    assert!(token_url(None, "x")
        .unwrap_err()
        .message
        .contains("SIGNET_ISSUER"));
}

#[test]
fn ids_are_one_escaped_path_segment() {
    let base = admin_base("http://h:1/prefix").unwrap();
    assert_eq!(
        object_url(&base, Kind::Client, None).as_str(),
        "http://h:1/prefix/admin/v1/Client"
    );
    assert_eq!(
        object_url(&base, Kind::ApiScope, Some("a/b c?d#e%f")).as_str(),
        "http://h:1/prefix/admin/v1/Resource/ApiScope/a%2Fb%20c%3Fd%23e%25f"
    );
    let root = admin_base("http://h:1").unwrap();
    assert_eq!(
        object_url(&root, Kind::IdentityResource, Some("openid")).as_str(),
        "http://h:1/admin/v1/Resource/IdentityResource/openid"
    );
}

#[test]
fn the_secret_comes_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "from-file-secret\n").unwrap();
    let env = |k: &str| (k == SECRET_ENV).then(|| "from-env".to_owned());
    let none = |_: &str| None;
    assert_eq!(secret(Some(&file), &env).unwrap(), "from-file-secret");
    assert_eq!(secret(None, &env).unwrap(), "from-env");
    let f = secret(None, &none).unwrap_err();
    assert_eq!(f.exit, Exit::Usage);
    assert_eq!(
        f.message,
        "no admin secret: set SIGNET_ADMIN_CLIENT_SECRET or pass --client-secret-file PATH"
    );
    let empty = |_: &str| Some(String::new());
    assert!(secret(None, &empty).is_err());
    std::fs::write(&file, "\n").unwrap();
    assert!(secret(Some(&file), &env)
        .unwrap_err()
        .message
        .contains("is empty"));
    let f = secret(Some(&dir.path().join("missing")), &env).unwrap_err();
    assert!(
        f.message.starts_with("cannot read the secret file"),
        "{f:?}"
    );
}

#[test]
fn token_answers_map_to_exit_codes() {
    let url = url::Url::parse("http://h/oauth2/token").unwrap();
    let ok = token_answer(
        StatusCode::OK,
        &json!({"access_token": "t"}),
        &url,
        "signet-admin",
    );
    assert_eq!(ok.unwrap(), "t");
    let code = |status: u16, body: serde_json::Value| {
        token_answer(
            StatusCode::from_u16(status).unwrap(),
            &body,
            &url,
            "signet-admin",
        )
        .unwrap_err()
    };
    let f = code(
        401,
        json!({"error": "invalid_client", "error_description": "client authentication failed"}),
    );
    assert_eq!(f.exit, Exit::Auth);
    assert!(f.message.contains("wrong or expired"), "{f:?}");
    assert_eq!(
        code(400, json!({"error": "invalid_scope"})).exit,
        Exit::Auth
    );
    assert_eq!(code(404, json!({"error": "not_found"})).exit, Exit::Connect);
    assert_eq!(code(200, json!({"hello": 1})).exit, Exit::Connect);
    assert_eq!(code(405, serde_json::Value::Null).exit, Exit::Connect);
    assert_eq!(
        code(503, json!({"error": "temporarily_unavailable"})).exit,
        Exit::Refused
    );
}

#[test]
fn refusals_are_one_line_with_every_field_error() {
    let body = json!({"error": "invalid_body", "error_description": "invalid a: x",
        "errors": [{"field": "a", "rule": "x"}, {"field": "b[0]", "rule": "y"}]});
    assert_eq!(
        refusal_text(StatusCode::BAD_REQUEST, &body),
        "a: x; b[0]: y"
    );
    let body = json!({"error": "conflict", "error_description": "client \"x\" already exists"});
    assert_eq!(
        refusal_text(StatusCode::CONFLICT, &body),
        "client \"x\" already exists"
    );
    assert_eq!(
        refusal_text(StatusCode::CONFLICT, &json!({})),
        "HTTP 409 Conflict"
    );
}

#[test]
fn invalid_file_failures_list_every_problem() {
    let src = Source::File(PathBuf::from("f.yaml"));
    let p = spec::Problem::file("invalid YAML: x");
    let f = Failure::invalid(&src, &[p.clone(), p]);
    assert_eq!(f.exit, Exit::Usage);
    assert_eq!(
        f.problems,
        ["f.yaml: invalid YAML: x", "f.yaml: invalid YAML: x"]
    );
    assert_eq!(
        f.message,
        "f.yaml is invalid (2 problems); nothing was written"
    );
}

#[test]
fn key_verbs_parse_and_check_the_algorithm() {
    use super::key::KeyVerb;
    let verb = |argv: &[&str]| match admin(argv).command {
        AdminCommand::Key(k) => k.verb,
        other => panic!("{other:?}"),
    };
    assert!(matches!(verb(&["key", "list"]), KeyVerb::List));
    assert!(matches!(verb(&["keys", "ls", "-o", "json"]), KeyVerb::List));
    assert!(matches!(verb(&["key", "get", "es256-a"]), KeyVerb::Get { kid } if kid == "es256-a"));
    assert!(
        matches!(verb(&["key", "rotate", "--alg", "ES256"]), KeyVerb::Rotate { alg } if alg == "ES256")
    );
    assert!(matches!(
        verb(&["key", "import", "--alg", "EdDSA", "-f", "k.pem"]),
        KeyVerb::Import { alg, file } if alg == "EdDSA" && file == Path::new("k.pem")
    ));
    assert!(
        matches!(verb(&["key", "revoke", "rs256-x"]), KeyVerb::Revoke { kid } if kid == "rs256-x")
    );
    for bad in [
        &["key", "rotate", "--alg", "HS256"][..],
        &["key", "rotate"],
        &["key", "import", "--alg", "RS256"],
        &["key", "revoke"],
        &["key", "create", "-f", "x"],
    ] {
        let mut full = vec!["signet", "admin"];
        full.extend_from_slice(bad);
        let e = Cli::try_parse_from(full).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{bad:?}");
    }
}

#[test]
fn key_urls_and_pem_files() {
    use super::client::key_url;
    use super::key::read_pem;
    let base = admin_base("http://h:1/prefix").unwrap();
    assert_eq!(
        key_url(&base, None).as_str(),
        "http://h:1/prefix/admin/v1/Key"
    );
    assert_eq!(
        key_url(&base, Some("es256-a/b")).as_str(),
        "http://h:1/prefix/admin/v1/Key/es256-a%2Fb"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k.pem");
    let pem_text = "-----BEGIN PRIVATE KEY-----\nTUlJQi1zZWNyZXQ=\n-----END PRIVATE KEY-----\n";
    std::fs::write(&file, pem_text).unwrap();
    assert_eq!(read_pem(&file).unwrap(), pem_text);
    let missing = read_pem(&dir.path().join("nope.pem")).unwrap_err();
    assert_eq!(missing.exit, Exit::Usage);
    assert!(
        missing.message.starts_with("cannot read the key file"),
        "{missing:?}"
    );
    std::fs::write(&file, "TUlJQi1zZWNyZXQ=").unwrap();
    let f = read_pem(&file).unwrap_err();
    assert!(
        f.message.contains("no PEM block") && !f.message.contains("TUlJQi1"),
        "{f:?}"
    );
    std::fs::write(&file, [0xff, 0xfe, 0x00]).unwrap();
    assert!(read_pem(&file).unwrap_err().message.contains("not text"));
    std::fs::write(&file, "-----BEGIN X-----\n".repeat(10_000)).unwrap();
    assert!(read_pem(&file).unwrap_err().message.contains("larger than"));
}

#[test]
fn ids_and_sids_may_start_with_a_hyphen() {
    // A sub, sid or clientId is random base64url and may begin with `-`.
    use super::user::UserVerb;
    let a = admin(&["user", "get", "-PxYz", "-o", "json"]);
    assert!(
        matches!(&a.command, AdminCommand::User(u) if matches!(&u.verb, UserVerb::Get { id } if id == "-PxYz"))
    );
    assert_eq!(a.conn.output, OutputFormat::Json);
    let a = admin(&["user", "logout", "-u1", "--sid", "-s1"]);
    assert!(matches!(&a.command, AdminCommand::User(u)
        if matches!(&u.verb, UserVerb::Logout { id, sid: Some(sid) } if id == "-u1" && sid == "-s1")));
    for verb in ["sessions", "delete"] {
        let a = admin(&["user", verb, "-abc"]);
        assert!(matches!(&a.command, AdminCommand::User(_)), "{verb}");
    }
    let a = admin(&["client", "get", "-web"]);
    assert!(
        matches!(&a.command, AdminCommand::Client(KindArgs { verb: Verb::Get { id } }) if id == "-web")
    );
}
