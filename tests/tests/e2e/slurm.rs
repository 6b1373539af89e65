//! Sharded suites under a real Slurm: a private cluster (munged, slurmctld,
//! slurmd as the test's own processes on loopback, see
//! `covnet_tests::slurm`) runs job arrays, and nothing of it is left
//! afterwards, on success and on a panic.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use covnet_tests::running::{alive, wait_until};
use covnet_tests::slurm::{processes_of, Cluster};

/// Deadline for an array of short tasks to end (they take well under a
/// second each; the rest is scheduling under load).
const ARRAY_TIMEOUT: Duration = Duration::from_secs(120);

fn hostname() -> Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/hostname")?
        .trim()
        .to_owned())
}

fn write_script(path: &Path, body: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, body)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Nothing of the cluster in `dir` runs or stays on disk, and none of
/// `pids` (its daemons) is alive.
fn ensure_gone(dir: &Path, pids: &[(&str, u32)]) -> Result<()> {
    let live: Vec<_> = pids.iter().filter(|(_, p)| alive(*p)).collect();
    ensure!(live.is_empty(), "daemons still running: {live:?}");
    let left = processes_of(dir);
    ensure!(left.is_empty(), "processes of the cluster left: {left:?}");
    ensure!(!dir.exists(), "{} was not removed", dir.display());
    Ok(())
}

#[test]
fn job_array_of_four_tasks_under_a_private_slurm() -> Result<()> {
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("slurm");
    let cluster = Cluster::start(&dir)?;
    let up = started.elapsed();
    let pids = cluster.daemon_pids();
    ensure!(
        pids.iter().map(|(n, _)| *n).collect::<Vec<_>>() == ["munged", "slurmctld", "slurmd"],
        "{pids:?}"
    );

    let work = tmp.path().join("work");
    std::fs::create_dir(&work)?;
    let script = tmp.path().join("task.sh");
    // What a covnet shard reads (the array variables), where it runs and
    // as whom, and the PATH it finds covnet on.
    write_script(
        &script,
        "#!/bin/sh\nset -e\nf=task-$SLURM_ARRAY_TASK_ID.txt\n\
         printf '%s\\n' \"$SLURM_ARRAY_TASK_ID\" \"$SLURM_ARRAY_TASK_COUNT\" \
         \"$SLURM_ARRAY_TASK_MIN\" \"$(hostname)\" \"$(id -u)\" \"$(pwd)\" \"$PATH\" > $f.tmp\n\
         mv $f.tmp $f\n",
    )?;
    // 2-5, not 0-3: a minimum of 0 would pass with the variable unset.
    let job = cluster.submit_array(&script, "2-5", &work)?;
    ensure!(job.tasks == BTreeSet::from([2, 3, 4, 5]), "{job:?}");
    let end = cluster.wait(&job, ARRAY_TIMEOUT)?;
    end.check()?;
    let ran = started.elapsed();
    ensure!(
        end.tasks.iter().map(|t| t.task).collect::<BTreeSet<_>>() == job.tasks,
        "{end}"
    );

    let host = hostname()?;
    let path = std::env::var("PATH").context("PATH")?;
    let workdir = work.canonicalize()?;
    for task in &job.tasks {
        let file = work.join(format!("task-{task}.txt"));
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "{} missing\n{end}{}",
                file.display(),
                std::fs::read_to_string(job.output(*task)).unwrap_or_default()
            )
        })?;
        let lines: Vec<&str> = text.lines().collect();
        let want = [
            task.to_string(),
            "4".to_owned(),
            "2".to_owned(),
            host.clone(),
            "0".to_owned(),
            workdir.display().to_string(),
            path.clone(),
        ];
        ensure!(
            lines == want,
            "task {task} wrote\n{text}\nwanted\n{}",
            want.join("\n")
        );
    }

    cluster.shutdown()?;
    ensure_gone(&dir, &pids)?;
    eprintln!(
        "slurm: cluster up in {up:.1?}, 4 tasks done at {ran:.1?}, all stopped at {:.1?}",
        started.elapsed()
    );
    Ok(())
}

#[test]
fn a_panic_with_tasks_running_leaves_nothing_of_slurm() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("slurm");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work)?;
    let script = tmp.path().join("sleep.sh");
    write_script(
        &script,
        "#!/bin/sh\ntouch running-$SLURM_ARRAY_TASK_ID\nexec sleep 600\n",
    )?;
    let mut pids = Vec::new();
    let mut job_pids = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<()> {
        let cluster = Cluster::start(&dir)?;
        pids = cluster.daemon_pids();
        cluster.submit_array(&script, "0-1", &work)?;
        wait_until("both tasks running", ARRAY_TIMEOUT, || {
            work.join("running-0").exists() && work.join("running-1").exists()
        })?;
        // The step daemons and sleeps, which the daemons' own process
        // groups do not hold.
        job_pids = processes_of(&dir)
            .into_iter()
            .filter(|(p, _)| !pids.iter().any(|(_, d)| d == p))
            .collect();
        panic!("a test failing with its Slurm jobs running");
    }));
    match outcome {
        Err(_) => {}
        Ok(r) => {
            r?;
            anyhow::bail!("the closure returned instead of panicking");
        }
    }
    ensure!(
        job_pids.iter().any(|(_, c)| c.contains("sleep 600")),
        "the tasks' processes were seen running: {job_pids:?}"
    );
    ensure_gone(&dir, &pids)?;
    let survivors: Vec<_> = job_pids.iter().filter(|(p, _)| alive(*p)).collect();
    ensure!(survivors.is_empty(), "job processes left: {survivors:?}");
    Ok(())
}
