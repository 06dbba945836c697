//! A real OpenLDAP `slapd` on free loopback ports, for the LDAP upstream tests (issue 16):
//! `ldap://` (StartTLS offered) and `ldaps://`, a test CA and a server certificate for
//! 127.0.0.1 minted with the `openssl` CLI, an `mdb` database in a temporary directory,
//! the `memberof` overlay (so users carry `memberOf`, as in Active Directory), and ACLs that
//! let nobody read anything without binding. The directory ([`LDIF`]) is loaded with
//! `ldapadd` as the root DN once the server answers (polled, no sleeps).
//!
//! The binaries are `$SLAPD` and `$LDAPADD`, else `/usr/sbin/slapd` and `ldapadd`
//! (`scripts/test.sh` installs Debian's `slapd` and `ldap-utils`). slapd runs as the
//! current user in the foreground (`-d 0`) and is killed when the [`Slapd`] is dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tokio::process::{Child, Command};

use crate::{eventually, free_port};

pub const BASE: &str = "dc=example,dc=org";
pub const PEOPLE: &str = "ou=people,dc=example,dc=org";
pub const SERVICE_DN: &str = "cn=signet,dc=example,dc=org";
pub const SERVICE_PASSWORD: &str = "service-secret-42";
pub const ADMINS_GROUP: &str = "cn=admins,ou=groups,dc=example,dc=org";
pub const STAFF_GROUP: &str = "cn=staff,ou=groups,dc=example,dc=org";
/// alice (in admins and staff) and bob (in staff); zoë has a non-ASCII uid.
pub const ALICE_PASSWORD: &str = "down the rabbit hole";
pub const BOB_PASSWORD: &str = "can we fix it";
pub const ZOE_PASSWORD: &str = "umlaut ë";

const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
const ROOT_PASSWORD: &str = "root-secret";

/// The test directory.
pub const LDIF: &str = "dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: cn=signet,dc=example,dc=org
objectClass: person
cn: signet
sn: service account
userPassword: service-secret-42

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
givenName: Alice
sn: Liddell
mail: alice@example.org
userPassword: down the rabbit hole

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
cn: Bob Builder
givenName: Bob
sn: Builder
mail: bob@example.org
userPassword: can we fix it

dn: uid=zo\\C3\\AB,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid:: em/Dqw==
cn:: Wm/DqyBEdXBvbnQ=
sn: Dupont
userPassword:: dW1sYXV0IMOr

dn: cn=admins,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: admins
member: uid=alice,ou=people,dc=example,dc=org

dn: cn=staff,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: staff
member: uid=alice,ou=people,dc=example,dc=org
member: uid=bob,ou=people,dc=example,dc=org
";

fn bin(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("run openssl")?;
    ensure!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The PEM of a fresh CA that signed nothing.
pub fn unrelated_ca() -> Result<String> {
    let dir = tempfile::tempdir()?;
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Unrelated CA",
        ],
    )?;
    Ok(std::fs::read_to_string(dir.path().join("ca.pem"))?)
}

/// A running slapd with the test directory.
pub struct Slapd {
    _child: Child,
    /// The `ldap://` port (StartTLS offered).
    pub port: u16,
    /// The `ldaps://` port.
    pub ldaps_port: u16,
    /// The PEM of the CA that signed the server's certificate.
    pub ca_pem: String,
    _dir: tempfile::TempDir,
}

impl Slapd {
    pub async fn start() -> Result<Slapd> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Test LDAP CA",
        ]);
        openssl(d, &ca)?;
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        openssl(d, &req)?;
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n",
        )?;
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        )?;
        std::fs::create_dir(d.join("db"))?;
        let p = d.display();
        let conf = format!(
            "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {p}/slapd.pid
TLSCACertificateFile {p}/ca.pem
TLSCertificateFile {p}/server.pem
TLSCertificateKeyFile {p}/server.key
database mdb
maxsize 10485760
suffix \"{BASE}\"
rootdn \"{ROOT_DN}\"
rootpw {ROOT_PASSWORD}
directory {p}/db
overlay memberof
access to attrs=userPassword by self =xw by anonymous auth by * none
access to * by users read by * none
"
        );
        std::fs::write(d.join("slapd.conf"), conf)?;
        let (port, ldaps_port) = (free_port(), free_port());
        let child = Command::new(bin("SLAPD", "/usr/sbin/slapd"))
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!(
                "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{ldaps_port}/"
            ))
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start slapd (install Debian's slapd, or set SLAPD)")?;
        let ca_pem = std::fs::read_to_string(d.join("ca.pem"))?;
        let slapd = Slapd {
            _child: child,
            port,
            ldaps_port,
            ca_pem,
            _dir: dir,
        };
        eventually(Duration::from_secs(20), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await
        .context("slapd did not listen")?;
        slapd.ldapadd(LDIF).await?;
        Ok(slapd)
    }

    /// `ldap://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:port`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// Adds `ldif` as the root DN.
    pub async fn ldapadd(&self, ldif: &str) -> Result<()> {
        let path = self._dir.path().join(format!("add-{}.ldif", free_port()));
        std::fs::write(&path, ldif)?;
        let out = Command::new(bin("LDAPADD", "ldapadd"))
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                ROOT_DN,
                "-w",
                ROOT_PASSWORD,
                "-f",
            ])
            .arg(&path)
            .output()
            .await
            .context("run ldapadd (install Debian's ldap-utils, or set LDAPADD)")?;
        ensure!(
            out.status.success(),
            "ldapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}
