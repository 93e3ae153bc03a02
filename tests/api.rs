//! The blueprint's web services (issue 10) over real HTTP on loopback:
//! `radiosync serve` as a process, the blueprint's own Python client, a raw
//! HTTP/1.1 client for each validation error, and the service itself for
//! callers from other addresses (a test cannot connect from one).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use radiosync::api::{Args, Service, FAILURE_WINDOW, MAX_FAILURES};
use radiosync::testkit::snapshot;
use serde_json::{json, Value};

mod store_util;

const EXE: &str = env!("CARGO_BIN_EXE_radiosync");

fn radiosync(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(EXE)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "radiosync {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A station as a new user makes one: the sample data, `init`, `track --all`.
fn station(dir: &Path) -> PathBuf {
    let db = dir.join("station.db");
    let db_s = db.to_str().unwrap();
    radiosync(&["sample", "--out", db_s], None);
    radiosync(&["init", "--db", db_s, "--name", "clinic"], None);
    radiosync(&["track", "--db", db_s, "--all"], None);
    db
}

/// `radiosync serve` on a free loopback port, stopped on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(db: &Path) -> Server {
        let mut child = Command::new(EXE)
            .args([
                "serve",
                "--db",
                db.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let at = first.find("http://").expect(&first) + 7;
        let addr = first[at..].split('/').next().unwrap().to_string();
        Server { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// One HTTP/1.1 request; the status and the body.
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let body = body.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").expect(&reply);
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_string())
    }

    /// A JSON-RPC call: the whole response object.
    fn rpc(&self, method: &str, params: Value) -> Value {
        let req = json!({"method": method, "params": params, "id": 7});
        let (status, body) =
            self.request("POST", "/sahana/admin/call/jsonrpc", Some(&req.to_string()));
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["id"], 7);
        v
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every row of every table (radiosync's included) and the number of log lines.
fn whole_db(db: &Path) -> (Vec<String>, i64) {
    let log = rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT count(*) FROM rs_log", [], |r| r.get(0))
        .unwrap();
    (store_util::dump(db), log)
}

fn rows_of(dump: &Value) -> usize {
    dump.as_array()
        .unwrap()
        .iter()
        .map(|t| t[2].as_array().unwrap().len())
        .sum()
}

/// The rows of `table` in a dump, as objects by column name.
fn table_rows(dump: &Value, table: &str) -> Vec<serde_json::Map<String, Value>> {
    let Some(t) = dump.as_array().unwrap().iter().find(|t| t[0] == table) else {
        return Vec::new();
    };
    let cols: Vec<&str> = t[1]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    t[2].as_array()
        .unwrap()
        .iter()
        .map(|r| {
            cols.iter()
                .zip(r.as_array().unwrap())
                .map(|(c, v)| (c.to_string(), v.clone()))
                .collect()
        })
        .collect()
}

#[test]
fn the_blueprints_python_client_gets_then_puts_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let db = station(dir.path());
    let server = Server::start(&db);
    let before = snapshot(&db);
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api_client/blueprint_client.py");
    let out = Command::new("python3")
        .arg(&client)
        .arg(server.url("/sahana/admin/call/jsonrpc"))
        .output()
        .expect("python3 (the CI script installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // All 8 sample tables (790 rows); sending them back adds nothing; the
    // second call without a timestamp has nothing new for this caller.
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "getdata tables 8 rows 790",
            "putdata True",
            "getdata again tables 0"
        ]
    );
    drop(server);
    assert_eq!(snapshot(&db), before);
    let log = radiosync(&["log", "--db", db.to_str().unwrap()], None);
    assert!(
        log.contains("api machinename12345") && log.contains("putdata: 0 applied, 790 not newer"),
        "{log}"
    );
}

#[test]
fn every_validation_error_of_the_blueprint_is_a_string_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = station(dir.path());
    let server = Server::start(&db);
    let before = whole_db(&db);
    let cols = json!(["id", "uuid", "modified_on", "name"]);
    let row = json!([1, "new-row", "2030-01-01 00:00:00", "x"]);
    // The blueprint's list, in its order; each comes back as the function's
    // result (a string), JSON-RPC's error stays null.
    let cases = [
        (json!({"org_office": []}), "nicedbdump is not a list"),
        (json!(["org_office"]), "not a list of lists"),
        (json!([["org_office", cols]]), "exactly 3 elements"),
        (json!([[5, cols, [row]]]), "(its name) is not a string"),
        (
            json!([["org_office", "id,uuid", [row]]]),
            "(its attributes) is not a list",
        ),
        (
            json!([["org_office", ["id", "uuid", "modified_on", 4], [row]]]),
            "attribute 3 is not a string",
        ),
        (
            json!([["org_office", cols, "rows"]]),
            "(its rows) is not a list",
        ),
        (
            json!([["org_office", cols, [row, "r"]]]),
            "row 1 is not a list",
        ),
        (
            json!([["org_office", cols, [[1, "u", "2030-01-01 00:00:00"]]]]),
            "row 0 has 3 values for 4 attributes",
        ),
        (
            json!([[
                "org_office",
                ["uuid", "modified_on", "name"],
                [["u", "2030-01-01 00:00:00", "x"]]
            ]]),
            "lacks the attribute(s) id",
        ),
        (
            json!([[
                "org_office",
                ["id", "modified_on", "name"],
                [[1, "2030-01-01 00:00:00", "x"]]
            ]]),
            "lacks the attribute(s) uuid",
        ),
        (
            json!([["org_office", ["id", "uuid", "name"], [[1, "u", "x"]]]]),
            "lacks the attribute(s) modified_on",
        ),
        // A good table before a bad one: nothing of the good one is applied.
        (
            json!([["org_office", cols, [row]], ["pr_person", cols, [[1]]]]),
            "row 0 has 1 values",
        ),
        (
            json!([["org_office", cols, [[1, null, "2030-01-01 00:00:00", "x"]]]]),
            "'uuid' must be a non-empty string",
        ),
        (
            json!([["org_office", cols, [[1, "u-1", "last week", "x"]]]]),
            "'modified_on' must be a time",
        ),
    ];
    for (dump, want) in &cases {
        let reply = server.rpc("putdata", json!(["app-1", "", "", dump]));
        assert_eq!(reply["error"], Value::Null, "{reply}");
        let result = reply["result"]
            .as_str()
            .unwrap_or_else(|| panic!("{dump}: {reply}"));
        assert!(result.contains(want), "{dump}: {result}");
        assert_eq!(whole_db(&db), before, "{dump} changed the database");
    }
    // A table the station does not have is ignored, as the blueprint says.
    let reply = server.rpc(
        "putdata",
        json!(["app-1", "", "", [["no_such_table", cols, [row]]]]),
    );
    assert_eq!(reply["result"], true, "{reply}");
    assert_eq!(whole_db(&db).0, before.0);
    // Calls that are not the service's are JSON-RPC errors.
    let reply = server.rpc("dropdata", json!(["app-1", "", ""]));
    assert_eq!(reply["error"]["code"], -32601, "{reply}");
    let reply = server.rpc("putdata", json!(["app-1", "", ""]));
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    let (_, body) = server.request("POST", "/sahana/admin/call/jsonrpc", Some("{not json"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        -32700
    );
    assert_eq!(whole_db(&db).0, before.0);
}

#[test]
fn putdata_applies_only_newer_rows_and_ids_stay_site_local() {
    let dir = tempfile::tempdir().unwrap();
    let db = station(dir.path());
    let server = Server::start(&db);
    let all = server.rpc("getdata", json!(["app-1", "", "", "0"]))["result"].clone();
    assert_eq!(rows_of(&all), 790);
    let offices = table_rows(&all, "org_office");
    let (a, b) = (&offices[0], &offices[1]);
    let (a_uuid, b_uuid) = (a["uuid"].as_str().unwrap(), b["uuid"].as_str().unwrap());
    let local_id = |uuid: &str| -> i64 {
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("SELECT id FROM org_office WHERE uuid = ?1", [uuid], |r| {
                r.get(0)
            })
            .unwrap()
    };
    let name_of = |uuid: &str| -> String {
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("SELECT name FROM org_office WHERE uuid = ?1", [uuid], |r| {
                r.get(0)
            })
            .unwrap()
    };
    let (a_id, b_name) = (local_id(a_uuid), name_of(b_uuid));
    // By plain JSON, arguments named: A newer (with a foreign id), B older,
    // and a row this station has never seen.
    let dump = json!([[
        "org_office",
        ["id", "uuid", "modified_on", "name"],
        [
            [90001, a_uuid, "2030-01-01 00:00:00", "Renamed by the app"],
            [90002, b_uuid, "2001-01-01 00:00:00", "An old name"],
            [
                90003,
                "brand-new-office",
                "2030-01-02 00:00:00",
                "A new office"
            ],
        ]
    ]]);
    let args = json!({"uuid": "app-1", "username": "", "password": "", "nicedbdump": dump});
    let (status, body) = server.request(
        "POST",
        "/sahana/admin/call/json/putdata",
        Some(&args.to_string()),
    );
    assert_eq!((status, body.as_str()), (200, "true"));
    assert_eq!(name_of(a_uuid), "Renamed by the app");
    assert_eq!(local_id(a_uuid), a_id, "the id is this station's own");
    assert_eq!(name_of(b_uuid), b_name, "an older row does not apply");
    assert_eq!(name_of("brand-new-office"), "A new office");
    assert_ne!(local_id("brand-new-office"), 90003);

    // getdata by GET with a timestamp: the two rows written, nothing older.
    let (status, body) = server.request(
        "GET",
        "/sahana/admin/call/json/getdata?uuid=app-2&username=&password=&timestamp=2029-12-31%2023:59:59",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let got: Value = serde_json::from_str(&body).unwrap();
    let rows = table_rows(&got, "org_office");
    assert_eq!(rows.len(), 2, "{body}");
    let new = rows
        .iter()
        .find(|r| r["uuid"] == "brand-new-office")
        .unwrap();
    assert_eq!(new["id"], local_id("brand-new-office"));
    let log = radiosync(&["log", "--db", db.to_str().unwrap()], None);
    assert!(log.contains("putdata: 2 applied, 1 not newer"), "{log}");
    // A timestamp that is not one is an error string.
    let reply = server.rpc("getdata", json!(["app-1", "", "", "last tuesday"]));
    assert!(reply["result"]
        .as_str()
        .unwrap()
        .contains("YYYY-MM-DD HH:MM:SS"));
}

#[test]
fn getdata_without_a_timestamp_gives_what_changed_since_that_callers_last_call() {
    let dir = tempfile::tempdir().unwrap();
    let db = station(dir.path());
    let server = Server::start(&db);
    let first = server.rpc("getdata", json!(["app-1", "", ""]))["result"].clone();
    assert_eq!(rows_of(&first), 790);
    let second = server.rpc("getdata", json!(["app-1", "", "", null]))["result"].clone();
    assert_eq!(rows_of(&second), 0);
    // The application edits one row and soft-deletes another behind radiosync.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "UPDATE pr_person SET first_name = 'Edited', modified_on = '2030-01-01T00:00:00.000Z'
           WHERE id = (SELECT min(id) FROM pr_person);
         UPDATE hms_hospital SET deleted = 1, modified_on = '2030-01-01T00:00:00.000Z'
           WHERE id = (SELECT min(id) FROM hms_hospital);",
    )
    .unwrap();
    drop(conn);
    let third = server.rpc("getdata", json!(["app-1", "", ""]))["result"].clone();
    assert_eq!(rows_of(&third), 2, "{third}");
    assert_eq!(table_rows(&third, "pr_person")[0]["first_name"], "Edited");
    assert_eq!(
        table_rows(&third, "hms_hospital")[0]["deleted"],
        1,
        "tombstones included"
    );
    // Each caller has its own mark.
    let other = server.rpc("getdata", json!(["app-2", "", ""]))["result"].clone();
    assert_eq!(rows_of(&other), 790);
}

fn named(v: Value) -> Args {
    Args::Named(v.as_object().unwrap().clone())
}

#[test]
fn a_caller_from_another_address_needs_a_password_and_a_reader_cannot_put() {
    let dir = tempfile::tempdir().unwrap();
    let db = station(dir.path());
    let db_s = db.to_str().unwrap();
    radiosync(
        &[
            "user",
            "add",
            "--db",
            db_s,
            "--name",
            "reader",
            "--role",
            "read",
            "--password-stdin",
        ],
        Some("read-secret\n"),
    );
    radiosync(
        &[
            "user",
            "add",
            "--db",
            db_s,
            "--name",
            "writer",
            "--role",
            "write",
            "--password-stdin",
        ],
        Some("write-secret\n"),
    );
    let users = radiosync(&["user", "list", "--db", db_s], None);
    assert!(users.contains("reader") && users.contains("writer") && !users.contains("secret"));
    let service = Service::open(&db).unwrap();
    let lan: IpAddr = "192.0.2.7".parse().unwrap();
    let t0 = Instant::now();
    let get = |user: &str, pw: &str| {
        named(json!({"uuid": "m1", "username": user, "password": pw, "timestamp": "0"}))
    };
    let put = |user: &str, pw: &str| {
        named(
            json!({"uuid": "m1", "username": user, "password": pw, "nicedbdump":
            [["org_office", ["id", "uuid", "modified_on", "name"], [[1, "lan-office", "2030-01-01 00:00:00", "From the LAN"]]]]}),
        )
    };
    let before = whole_db(&db).0;

    // No password, or a wrong one: a short refusal, no data.
    for args in [get("", ""), get("reader", "guess"), put("writer", "")] {
        let method = if matches!(&args, Args::Named(m) if m.contains_key("nicedbdump")) {
            "putdata"
        } else {
            "getdata"
        };
        let r = service.call(lan, t0, method, &args).unwrap();
        assert_eq!(r, "authentication failed: wrong username or password");
    }
    // The same call from this machine needs none (the blueprint's localhost bypass).
    let r = service
        .call("::1".parse().unwrap(), t0, "getdata", &get("", ""))
        .unwrap();
    assert!(r.is_array());
    // A reader reads, and may not write.
    let r = service
        .call(lan, t0, "getdata", &get("reader", "read-secret"))
        .unwrap();
    assert_eq!(rows_of(&r), 790);
    let r = service
        .call(lan, t0, "putdata", &put("reader", "read-secret"))
        .unwrap();
    assert_eq!(r, "user reader may read only: putdata needs a write user");
    assert_eq!(whole_db(&db).0, before, "nothing written");
    // Two more failures make five: the address must wait, even with the right password.
    for _ in 0..MAX_FAILURES - 3 {
        service
            .call(lan, t0, "getdata", &get("writer", "nope"))
            .unwrap();
    }
    let r = service
        .call(lan, t0, "putdata", &put("writer", "write-secret"))
        .unwrap();
    assert!(
        r.as_str()
            .unwrap()
            .starts_with("too many failed logins from 192.0.2.7"),
        "{r}"
    );
    // Another address is not held up, and after the window the writer writes.
    let other: IpAddr = "192.0.2.8".parse().unwrap();
    let r = service
        .call(other, t0, "getdata", &get("reader", "read-secret"))
        .unwrap();
    assert!(r.is_array());
    assert_eq!(whole_db(&db).0, before, "nothing written");
    // An IPv6 host hopping around its /64 is one guesser.
    for i in 0..MAX_FAILURES {
        let hop: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
        service
            .call(hop, t0, "getdata", &get("reader", "nope"))
            .unwrap();
    }
    let hop: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
    let r = service
        .call(hop, t0, "getdata", &get("reader", "read-secret"))
        .unwrap();
    assert!(
        r.as_str().unwrap().starts_with("too many failed logins"),
        "{r}"
    );
    let later = t0 + FAILURE_WINDOW + Duration::from_secs(1);
    let r = service
        .call(lan, later, "putdata", &put("writer", "write-secret"))
        .unwrap();
    assert_eq!(r, true);
    let r = service
        .call(lan, later, "getdata", &get("reader", "read-secret"))
        .unwrap();
    assert_eq!(
        table_rows(&r, "org_office")
            .iter()
            .filter(|r| r["uuid"] == "lan-office")
            .count(),
        1
    );
}
