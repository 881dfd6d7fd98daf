//! `casecast ingest-worker` processes beside the server, as on other machines: one
//! PostgreSQL, one S3 (moto), each worker with a data folder of its own.

use super::cases::{assert_no_phi, files_under, get_json, make_fixtures, tus_upload};
use super::*;
use casecast_ingest::store::{Db, Job};

/// A worker process and its log.
struct Worker {
    proc: Proc,
    log: std::path::PathBuf,
}

impl Worker {
    /// Starts `casecast ingest-worker` with its own data folder `dir`, the server's
    /// secret and `shared` (the stores), logging to `<dir>/<name>.log`.
    fn start(dir: &std::path::Path, name: &str, shared: &[&str]) -> Result<Worker> {
        Self::start_with(dir, name, shared, &[])
    }

    /// As [`Worker::start`], with more flags.
    fn start_with(dir: &std::path::Path, name: &str, shared: &[&str], extra: &[&str]) -> Result<Worker> {
        std::fs::create_dir_all(dir)?;
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let child = std::process::Command::new(casecast_bin())
            .arg("ingest-worker")
            .args(["--data-dir", &dir.display().to_string(), "--secret", SECRET, "--cases-workers", "2"])
            .args(shared)
            .args(extra)
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let w = Worker { proc: Proc(child), log };
        wait_for("the worker to start", Duration::from_secs(30), || w.log_text().contains("ingest worker started").then_some(()))?;
        Ok(w)
    }

    fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The jobs it logged done.
    fn done(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("ingest job done"))
            .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("job=")).map(str::to_string))
            .collect()
    }
}

/// Every job of the library, from the database.
fn jobs(rt: &tokio::runtime::Runtime, db: &Db) -> Vec<Job> {
    rt.block_on(db.jobs("demo", 10_000)).unwrap_or_default()
}

fn s3_keys(moto: &Moto, prefix: &str) -> Result<Vec<String>> {
    let (_, _, listing) = http_request("GET", &format!("{}/cases-bucket?list-type=2&max-keys=1000&prefix={prefix}", moto.endpoint), &[], None)?;
    let listing = String::from_utf8_lossy(&listing).to_string();
    Ok(listing.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).map(str::to_string).collect())
}

/// Two ingest workers and the server on one PostgreSQL and one S3: the server only
/// records the uploads (200 pictures by STOW-RS, tus and a ZIP, and a slow cine),
/// staged in S3; the workers, each with a data folder of its own as on another
/// machine, take every job exactly once. A worker killed in the middle of the cine
/// loses its lease and the other finishes it; nothing is published twice, no staged
/// original is left in S3, the killed worker's leftovers are removed when a worker
/// starts again on its folder, and a worker asked to stop puts its job back in the
/// queue at once. A worker with another secret refuses to start.
#[test]
fn ingest_workers_share_the_jobs_through_postgresql_and_s3_and_a_killed_one_loses_its_lease() -> Result<()> {
    let pg = Postgres::start()?;
    let moto = Moto::start_s3("cases-bucket")?;
    let lease_secs = 6;
    let lease = lease_secs.to_string();
    let shared = [
        "--cases-database",
        &pg.url,
        "--cases-objects",
        "s3://cases-bucket/library",
        "--cases-s3-endpoint",
        &moto.endpoint,
        "--cases-stage-in-objects",
        "true",
        "--cases-lease-secs",
        &lease,
    ];
    let mut server_args = vec!["--cases-cstore-listen", "", "--cases-ingest-in-server", "false"];
    server_args.extend(shared);
    let server = Server::start(&server_args)?;
    let dir = TempDir::new("ingest-workers");
    let input = dir.0.join("in");
    make_fixtures(&input, &["series", "200"])?;
    make_fixtures(&input, &["slowcine", "40"])?;
    let doctor = server.token("demo", Role::Commentator, "Dr. Many");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let db = rt.block_on(Db::connect(&pg.url))?;

    // Another secret would give patients other pseudonyms: refused.
    let wrong = std::process::Command::new(casecast_bin())
        .arg("ingest-worker")
        .args(["--data-dir", &dir.0.join("wrong").display().to_string(), "--secret", "another-secret-0123456789abcdef"])
        .args(shared)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut wrong = Proc(wrong);
    let status = wait_for("the worker with another secret to exit", Duration::from_secs(30), || wrong.0.try_wait().ok().flatten())?;
    let mut said = String::new();
    std::io::Read::read_to_string(wrong.0.stderr.as_mut().unwrap(), &mut said)?;
    assert!(!status.success() && said.contains("not the server's"), "{status}: {said}");

    // Worker A takes the slow cine.
    let a = Worker::start(&dir.0.join("a"), "first", &shared)?;
    let cine = tus_upload(&server, &doctor, &std::fs::read(input.join("slowcine.dcm"))?, "dicom", 1 << 20)?;
    wait_for("worker A to be a few frames into the cine", Duration::from_secs(90), || {
        rt.block_on(db.job(&cine)).ok().flatten().filter(|j| j.status == "running" && j.frame >= 2)
    })?;
    // The server keeps no original: the upload waits in S3 for whichever worker.
    assert!(files_under(&server.data_dir().join("cases/staging")).iter().all(|f| f.extension().is_none_or(|e| e != "part")), "an upload left on the server");

    // Worker B joins; 200 pictures arrive: 150 by STOW-RS, 40 by tus, 10 in a ZIP.
    let b_metrics = format!("127.0.0.1:{}", free_tcp_port());
    let b = Worker::start_with(&dir.0.join("b"), "first", &shared, &["--metrics-listen", &b_metrics])?;
    let file = |n: usize| std::fs::read(input.join(format!("DOE_JOHN_s{n:03}.dcm")));
    for chunk in 0..3 {
        let boundary = "workers-boundary-77";
        let mut body = Vec::new();
        for n in chunk * 50..(chunk + 1) * 50 {
            body.extend(format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").bytes());
            body.extend(file(n)?);
            body.extend(b"\r\n");
        }
        body.extend(format!("--{boundary}--\r\n").bytes());
        let ct = format!("multipart/related; type=\"application/dicom\"; boundary={boundary}");
        let (s, _, resp) = http_request("POST", &format!("{}/dicomweb/studies", server.url), &[("Authorization", &format!("Bearer {doctor}")), ("Content-Type", &ct)], Some(&body))?;
        assert_eq!(s, 202, "{}", String::from_utf8_lossy(&resp));
    }
    for n in 150..190 {
        tus_upload(&server, &doctor, &file(n)?, "dicom", 1 << 20)?;
    }
    let zip = dir.0.join("ten.zip");
    let zipped = std::process::Command::new("/usr/bin/python3")
        .args(["-m", "zipfile", "-c"])
        .arg(&zip)
        .args((190..200).map(|n| input.join(format!("DOE_JOHN_s{n:03}.dcm"))))
        .output()?;
    assert!(zipped.status.success(), "{}", String::from_utf8_lossy(&zipped.stderr));
    tus_upload(&server, &doctor, &std::fs::read(&zip)?, "zip", 1 << 20)?;

    // A dies in the middle of the cine (and of whatever else it holds).
    let before = rt.block_on(db.job(&cine))?.expect("the cine's job");
    assert!(before.status == "running" && before.attempts == 1, "{before:?}");
    let a_pid = a.pid();
    let a_done = a.done();
    drop(a);
    let killed = std::time::Instant::now();
    let scratch_a = dir.0.join("a/cases/worker").join(a_pid.to_string());
    assert!(!files_under(&scratch_a).is_empty(), "the killed worker held the cine's original");

    let all = wait_for("every job to end", Duration::from_secs(400), || {
        let all = jobs(&rt, &db);
        (all.len() == 202 && all.iter().all(|j| j.status == "done" || j.status == "failed")).then_some(all)
    })?;
    let failed: Vec<_> = all.iter().filter(|j| j.status != "done").map(|j| (&j.id, &j.error)).collect();
    assert!(failed.is_empty(), "{failed:?}");
    let cine_job = all.iter().find(|j| j.id == cine).unwrap();
    assert_eq!(cine_job.attempts, 2, "the cine was taken again once, after A's lease ran out");
    // Each job was done by exactly one worker, the cine by B.
    let b_done = b.done();
    let mut done: Vec<&String> = a_done.iter().chain(&b_done).collect();
    done.sort();
    let n = done.len();
    done.dedup();
    assert_eq!((n, done.len()), (202, 202), "jobs done twice or never (A {}, B {})", a_done.len(), b_done.len());
    assert!(b_done.contains(&cine), "B finished the cine");
    // B's own metrics say what it did.
    let (_, text) = http_get(&format!("http://{b_metrics}/metrics"))?;
    assert_eq!(metric_value(&text, "casecast_ingest_jobs_finished_total{outcome=\"done\"}"), Some(b_done.len() as f64), "B's /metrics");
    assert!(metric_value(&text, "process_cpu_seconds_total").is_some_and(|c| c > 0.0), "B's process figures");
    println!("A did {} jobs before it was killed, B {}; the cine ended {:.1} s after the kill", a_done.len(), b_done.len(), killed.elapsed().as_secs_f64());

    // Published once each: two studies, 200 + 1 instances; no staged original left.
    let (_, studies) = get_json(&format!("{}/api/cases/studies", server.url), &doctor)?;
    let mut counts: Vec<i64> = studies.as_array().unwrap().iter().filter_map(|s| s["instance_count"].as_i64()).collect();
    counts.sort();
    assert_eq!(counts, [1, 200], "{studies}");
    let dcm = s3_keys(&moto, "library/demo/")?.into_iter().filter(|k| k.ends_with(".dcm")).count();
    assert_eq!(dcm, 201);
    wait_for("the staged originals to be removed from S3", Duration::from_secs(20), || s3_keys(&moto, "library/.staging/").ok().filter(|k| k.is_empty()))?;
    assert!(server.log_text().lines().all(|l| !l.contains("ingest job done")), "the server ran jobs");

    // A worker started again on A's folder removes what the killed one left there.
    let a2 = Worker::start(&dir.0.join("a"), "again", &shared)?;
    assert!(!scratch_a.exists(), "the killed worker's original is still on disk");

    // Asked to stop in the middle of a job, a worker puts it back in the queue at
    // once (not when its lease would run out), and the other takes it.
    b.proc.terminate()?;
    let again = tus_upload(&server, &doctor, &std::fs::read(input.join("slowcine.dcm"))?, "dicom", 1 << 20)?;
    wait_for("the worker to be into the cine", Duration::from_secs(60), || {
        rt.block_on(db.job(&again)).ok().flatten().filter(|j| j.status == "running" && j.frame >= 1)
    })?;
    a2.proc.terminate()?;
    let queued = rt.block_on(db.job(&again))?.expect("its job");
    assert_eq!(queued.status, "queued", "{queued:?}");
    let b2 = Worker::start(&dir.0.join("b"), "again", &shared)?;
    let finished = wait_for("the other worker to finish it", Duration::from_secs(120), || {
        rt.block_on(db.job(&again)).ok().flatten().filter(|j| j.status == "done" || j.status == "failed")
    })?;
    assert_eq!(finished.status, "done", "{finished:?}");
    assert_eq!(s3_keys(&moto, "library/demo/")?.into_iter().filter(|k| k.ends_with(".dcm")).count(), 201, "the same cine twice is one instance");

    // `casecast cases import` from a machine that runs no job: its files go through
    // S3 to the worker, and it reports them done.
    let import = std::process::Command::new(casecast_bin())
        .args(["cases", "import", "--room", "demo", "--data-dir", &dir.0.join("importer").display().to_string(), "--secret", SECRET])
        .args(["--cases-ingest-in-server", "false"])
        .args(shared)
        .args((0..3).map(|n| input.join(format!("DOE_JOHN_s{n:03}.dcm"))))
        .output()?;
    let said = String::from_utf8_lossy(&import.stderr);
    assert!(import.status.success() && said.contains("3 done, 0 failed"), "{said}");
    assert_eq!(b2.done().len(), 4, "the worker ran the import's jobs");

    for (what, log) in [("worker A", "a/first"), ("worker A again", "a/again"), ("worker B", "b/first"), ("worker B again", "b/again")] {
        assert_no_phi(what, std::fs::read_to_string(dir.0.join(format!("{log}.log")))?.as_bytes());
    }
    drop(b2);
    assert_no_phi("the server log", server.log_text().as_bytes());
    Ok(())
}
