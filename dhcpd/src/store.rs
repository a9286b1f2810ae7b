//! Where leases are made durable before the ACK that grants them leaves: the journal file
//! (the default, see [`crate::leases`]) or a PostgreSQL lease table shared by several servers
//! (`lease-database` in dhcpd.conf, Kea's model).
//!
//! The server's journal thread hands every batch to a [`Store`]; only the leases the store
//! accepted are ACKed. With PostgreSQL the table is the arbiter between servers: the address
//! is the primary key and the client is unique (checked at COMMIT), and a lease is written
//! only over a row of the same client or one that has ended, so no address is ever granted
//! to two clients; the ACK waits for the COMMIT to be acknowledged.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use tracing::{info, warn};

use crate::conf::leasedb::LeaseDb;
use crate::engine::{lease_key, Engine};
use crate::leases::{self, Journal, Lease};

/// What became of one lease handed to [`Store::commit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Durable: it may be granted.
    Stored,
    /// Not stored, so not to be granted: the address is held by another client (its record,
    /// if known), or the lease was superseded or refused.
    Refused(Option<Lease>),
}

/// A place that makes leases durable.
pub trait Store: Send {
    /// Makes `leases` durable; one [`Outcome`] per lease. An `Err` of the whole call means
    /// nothing may be granted.
    fn commit(&mut self, leases: &[&Lease]) -> anyhow::Result<Vec<Outcome>>;
    /// After each batch (the journal compacts itself here).
    fn maintain(&mut self, _engine: &Mutex<Engine>) {}
    /// Whether the server must stop when [`Store::commit`] fails (a local disk that fails
    /// will not recover; a database may come back).
    fn fatal(&self) -> bool;
    /// For log lines.
    fn describe(&self) -> String;
}

impl Store for Journal {
    fn commit(&mut self, leases: &[&Lease]) -> anyhow::Result<Vec<Outcome>> {
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        for l in leases {
            leases::render_into(&mut text, l);
        }
        let written = self.append_batch(&text, leases.len());
        self.scratch = text;
        written?;
        Ok(vec![Outcome::Stored; leases.len()])
    }

    fn maintain(&mut self, engine: &Mutex<Engine>) {
        let live = engine.lock().map(|e| e.leases.len()).unwrap_or(0);
        if self.appended <= 10_000.max(2 * live) {
            return;
        }
        let snapshot: Vec<Lease> = engine
            .lock()
            .map(|e| e.leases.values().cloned().collect())
            .unwrap_or_default();
        match Journal::compact(self.path(), snapshot.iter()) {
            Ok(j) => {
                info!(leases = snapshot.len(), "lease journal compacted");
                *self = j;
            }
            Err(e) => warn!(error = %e, "journal compaction failed; appending to the old file"),
        }
    }

    fn fatal(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.path().display().to_string()
    }
}

/// The schema, one step per version: `db init` applies them all, `db upgrade` the missing.
const MIGRATIONS: &[&str] = &[
    // 1: one row per address; `client` is the engine's client key (0xff + client identifier,
    // or hardware type + address), unique at COMMIT so that a client that moves to another
    // address in the same transaction is not refused halfway; `block` is the lease in
    // dhcpd.leases syntax (everything the journal keeps).
    "CREATE TABLE dhcpd_leases (
        address bigint PRIMARY KEY,
        client bytea UNIQUE DEFERRABLE INITIALLY DEFERRED,
        state text NOT NULL,
        ends bigint NOT NULL,
        block text NOT NULL,
        server text NOT NULL,
        modified timestamptz NOT NULL DEFAULT clock_timestamp());
     CREATE INDEX dhcpd_leases_modified ON dhcpd_leases (modified);",
];

fn password(db: &LeaseDb) -> anyhow::Result<Option<String>> {
    let Some(f) = &db.password_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(f).with_context(|| {
        format!(
            "cannot read the lease-database password-file {} (named at {})",
            f.display(),
            db.pos
        )
    })?;
    Ok(Some(text.lines().next().unwrap_or("").to_string()))
}

/// A connection to the lease database.
pub fn connect(db: &LeaseDb) -> anyhow::Result<postgres::Client> {
    let mut c = postgres::Config::new();
    c.host(&db.host)
        .port(db.port)
        .user(&db.user)
        .dbname(&db.name)
        .application_name("dhcpd")
        .connect_timeout(Duration::from_secs(5));
    if let Some(pw) = password(db)? {
        c.password(pw);
    }
    c.connect(postgres::NoTls).with_context(|| {
        format!(
            "cannot connect to PostgreSQL database {} on {}:{} as {} (lease-database at {})",
            db.name, db.host, db.port, db.user, db.pos
        )
    })
}

fn version(tx: &mut postgres::Transaction) -> anyhow::Result<Option<usize>> {
    let exists: bool = tx
        .query_one("SELECT to_regclass('dhcpd_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let v: i32 = tx
        .query_one("SELECT version FROM dhcpd_schema", &[])?
        .get(0);
    Ok(Some(v.max(0) as usize))
}

/// `dhcpd db init` (`upgrade` false) or `dhcpd db upgrade`: creates or brings the schema up
/// to date, in one transaction. Returns what was done.
pub fn migrate(db: &LeaseDb, upgrade: bool) -> anyhow::Result<String> {
    let mut client = connect(db)?;
    let mut tx = client.transaction()?;
    let have = version(&mut tx)?;
    let from = match (have, upgrade) {
        (Some(v), false) => bail!(
            "database {} already has the dhcpd schema (version {v}); `dhcpd db upgrade` updates it",
            db.name
        ),
        (None, true) => bail!(
            "database {} has no dhcpd schema; `dhcpd db init` creates it",
            db.name
        ),
        (Some(v), true) if v > MIGRATIONS.len() => bail!(
            "database {} has schema version {v}, newer than this dhcpd knows ({}): upgrade dhcpd",
            db.name,
            MIGRATIONS.len()
        ),
        (Some(v), true) => v,
        (None, false) => {
            tx.batch_execute("CREATE TABLE dhcpd_schema (version integer NOT NULL)")?;
            tx.execute("INSERT INTO dhcpd_schema VALUES (0)", &[])?;
            0
        }
    };
    for m in &MIGRATIONS[from..] {
        tx.batch_execute(m)?;
    }
    tx.execute(
        "UPDATE dhcpd_schema SET version = $1",
        &[&(MIGRATIONS.len() as i32)],
    )?;
    tx.commit()?;
    Ok(if from == MIGRATIONS.len() {
        format!("schema version {from} is current")
    } else {
        format!("schema version {from} -> {}", MIGRATIONS.len())
    })
}

/// The PostgreSQL lease store of one server.
pub struct Pg {
    db: LeaseDb,
    client: postgres::Client,
    /// This server's name in the `server` column.
    server: String,
}

const UPSERT: &str = "INSERT INTO dhcpd_leases (address, client, state, ends, block, server)
    SELECT n.address, n.client, n.state, n.ends, n.block, $6::text
    FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::bigint[], $5::text[])
        AS n(address, client, state, ends, block)
    ON CONFLICT (address) DO UPDATE SET client = EXCLUDED.client, state = EXCLUDED.state,
        ends = EXCLUDED.ends, block = EXCLUDED.block, server = EXCLUDED.server,
        modified = clock_timestamp()
    WHERE dhcpd_leases.client IS NOT DISTINCT FROM EXCLUDED.client
       OR dhcpd_leases.ends <= $7::bigint
       OR dhcpd_leases.state NOT IN ('active', 'abandoned')
    RETURNING address";

fn to_lease(block: &str) -> Option<Lease> {
    leases::parse(block).0.into_values().next()
}

fn addr(ip: Ipv4Addr) -> i64 {
    i64::from(u32::from(ip))
}

impl Pg {
    /// Connects and checks that the schema is the one this dhcpd writes.
    pub fn open(db: &LeaseDb, server: &str) -> anyhow::Result<Pg> {
        let mut client = connect(db)?;
        let mut tx = client.transaction()?;
        match version(&mut tx)? {
            Some(v) if v == MIGRATIONS.len() => {}
            Some(v) => bail!(
                "database {} has dhcpd schema version {v}, this dhcpd needs {}: run `dhcpd db upgrade`",
                db.name,
                MIGRATIONS.len()
            ),
            None => bail!(
                "database {} has no dhcpd schema: run `dhcpd db init --config FILE` first",
                db.name
            ),
        }
        tx.commit()?;
        Ok(Pg {
            db: db.clone(),
            client,
            server: server.to_string(),
        })
    }

    /// A new connection (after the database went away).
    pub fn reconnect(&mut self) -> anyhow::Result<()> {
        self.client = connect(&self.db)?;
        Ok(())
    }

    /// Every lease in the store.
    pub fn load(&mut self) -> anyhow::Result<HashMap<Ipv4Addr, Lease>> {
        let mut out = HashMap::new();
        for r in self.client.query("SELECT block FROM dhcpd_leases", &[])? {
            if let Some(l) = to_lease(r.get(0)) {
                out.insert(l.ip, l);
            }
        }
        Ok(out)
    }

    /// The leases written since `since` (the database's clock, epoch seconds; a margin
    /// covers transactions that committed late), and the database's time now.
    pub fn changed_since(&mut self, since: f64) -> anyhow::Result<(Vec<Lease>, f64)> {
        let now: f64 = self
            .client
            .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])?
            .get(0);
        let rows = self.client.query(
            "SELECT block FROM dhcpd_leases WHERE modified >= to_timestamp($1::float8 - 5)",
            &[&since],
        )?;
        let v = rows.iter().filter_map(|r| to_lease(r.get(0))).collect();
        Ok((v, now))
    }

    /// One transaction, one statement for all the leases of a batch (a round trip per lease
    /// would make the server wait on the network for every one).
    fn batch(&mut self, leases: &[&Lease]) -> Result<Vec<Outcome>, postgres::Error> {
        let now = leases::now() as i64;
        let keys: Vec<Option<Vec<u8>>> = leases.iter().map(|l| lease_key(l)).collect();
        // the batch's last lease for an address, and for a client, is the one written; an
        // earlier one is superseded (and not granted)
        let (mut last_ip, mut last_key) = (HashMap::new(), HashMap::new());
        for (i, l) in leases.iter().enumerate() {
            last_ip.insert(l.ip, i);
            if let Some(k) = &keys[i] {
                last_key.insert(k.as_slice(), i);
            }
        }
        let mut write: Vec<usize> = (0..leases.len())
            .filter(|&i| {
                last_ip[&leases[i].ip] == i
                    && keys[i].as_ref().is_none_or(|k| last_key[k.as_slice()] == i)
            })
            .collect();
        // rows in one order in every server: concurrent batches wait, never deadlock
        write.sort_by_key(|&i| u32::from(leases[i].ip));
        let a: Vec<i64> = write.iter().map(|&i| addr(leases[i].ip)).collect();
        let c: Vec<Option<Vec<u8>>> = write.iter().map(|&i| keys[i].clone()).collect();
        let st: Vec<&str> = write.iter().map(|&i| leases[i].state.isc()).collect();
        let e: Vec<i64> = write
            .iter()
            .map(|&i| leases[i].ends.min(i64::MAX as u64) as i64)
            .collect();
        let b: Vec<String> = write.iter().map(|&i| leases::render(leases[i])).collect();
        let mut tx = self.client.transaction()?;
        let rows = tx.query(UPSERT, &[&a, &c, &st, &e, &b, &self.server, &now])?;
        let stored: HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
        let lost: Vec<i64> = a.iter().filter(|x| !stored.contains(x)).copied().collect();
        let mut holders: HashMap<i64, Option<Lease>> = HashMap::new();
        if !lost.is_empty() {
            for r in tx.query(
                "SELECT address, block FROM dhcpd_leases WHERE address = ANY($1)",
                &[&lost],
            )? {
                holders.insert(r.get(0), to_lease(r.get(1)));
            }
        }
        // one lease per client: its rows at other addresses go
        let (dc, da): (Vec<Vec<u8>>, Vec<i64>) = c
            .iter()
            .zip(&a)
            .filter(|(_, x)| stored.contains(x))
            .filter_map(|(k, x)| k.clone().map(|k| (k, *x)))
            .unzip();
        if !dc.is_empty() {
            tx.execute(
                "DELETE FROM dhcpd_leases d USING unnest($1::bytea[], $2::bigint[]) AS n(client, address)
                 WHERE d.client = n.client AND d.address <> n.address",
                &[&dc, &da],
            )?;
        }
        tx.commit()?;
        let mut written = vec![false; leases.len()];
        for &i in &write {
            written[i] = true;
        }
        Ok(leases
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let x = addr(l.ip);
                if !written[i] {
                    Outcome::Refused(None)
                } else if stored.contains(&x) {
                    Outcome::Stored
                } else {
                    Outcome::Refused(holders.get(&x).cloned().flatten())
                }
            })
            .collect())
    }
}

impl Store for Pg {
    fn commit(&mut self, leases: &[&Lease]) -> anyhow::Result<Vec<Outcome>> {
        match self.batch(leases) {
            Ok(v) => return Ok(v),
            Err(e) if self.client.is_closed() => {
                warn!(error = %e, "lease database connection lost; reconnecting");
                self.client = connect(&self.db)?;
            }
            Err(e) => warn!(error = %e, "lease batch refused; storing the leases one by one"),
        }
        // one transaction per lease: one that fails (another server's concurrent write of
        // the same client) is not granted, the others are
        let mut out = Vec::with_capacity(leases.len());
        for l in leases {
            match self.batch(&[l]) {
                Ok(mut v) => out.push(v.pop().unwrap_or(Outcome::Refused(None))),
                Err(e) if self.client.is_closed() => {
                    return Err(e).context("lease database connection lost")
                }
                Err(e) => {
                    warn!(ip = %l.ip, error = %e, "lease not stored; not granted");
                    out.push(Outcome::Refused(None));
                }
            }
        }
        Ok(out)
    }

    fn fatal(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!(
            "postgresql://{}@{}:{}/{}",
            self.db.user, self.db.host, self.db.port, self.db.name
        )
    }
}
