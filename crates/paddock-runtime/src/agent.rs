//! The in-sandbox agent as the runtime sees it: where it is mounted, the one place its argv is
//! built, how a spec is completed from the image's config, and the readiness probe over the
//! agent's unix socket.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::image::{ImageConfig, ImageRef};
use crate::spec::{EnvVar, VolumeMount, VolumeSource, WorkloadSpec};

/// Where the agent binary is bind-mounted (read-only) inside every sandbox.
pub const AGENT_PATH: &str = "/.paddock/bin/agent";
/// The sandbox directory holding the agent's socket: a host directory bind-mounted here.
pub const RUN_DIR: &str = "/.paddock/run";
/// The writable directory every sandbox gets (an `emptyDir`), where commands run by default.
pub const WORKSPACE: &str = "/workspace";
/// The name of the workspace's volume.
pub const WORKSPACE_VOLUME: &str = "paddock-workspace";
/// The agent's socket file name inside [`RUN_DIR`].
pub const SOCKET_NAME: &str = "agent.sock";

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One setting of the agent, given as a flag (gVisor: the container's argv) or as the
/// environment variable the agent reads for that flag (bwrap: a pre-started bwrap's command is
/// fixed, so its settings travel as `--setenv`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentOption {
    pub flag: &'static str,
    pub env: &'static str,
    pub value: String,
}

/// The agent's settings for a workload: listen on the run directory's socket, never on TCP
/// (the sandbox has no network and the workload may want port 8888), files and commands rooted
/// at the working directory. The only place they are decided; [`agent_argv`] and [`agent_env`]
/// render them.
///
/// With a main command (`spec.command`, completed from the image by [`resolve_with_image`]) the
/// agent supervises it: its output goes to [`MAIN_LOG`] and its exit status to [`MAIN_STATUS`]
/// (both in the host-visible run directory), and the sandbox ends when it ends. bwrap sandboxes
/// are also confined with Landlock to the spec's writable paths.
pub fn agent_options(spec: &WorkloadSpec) -> Vec<AgentOption> {
    // In the default workspace, files are addressed from `/` (`paddock cp x dev:/etc/...`)
    // and commands start in the workspace; a working directory of the spec's or the image's
    // own roots both, as upstream's runtimes do.
    let workdir = spec.working_dir.clone().unwrap_or_else(|| "/".to_owned());
    let root = if workdir == WORKSPACE {
        "/".to_owned()
    } else {
        workdir.clone()
    };
    let mut options = vec![
        AgentOption {
            flag: "--unix",
            env: "PADDOCK_AGENT_UNIX",
            value: format!("{RUN_DIR}/{SOCKET_NAME}"),
        },
        AgentOption {
            flag: "--root-dir",
            env: "PADDOCK_AGENT_ROOT_DIR",
            value: root.clone(),
        },
        AgentOption {
            flag: "--base-dir",
            env: "SANDBOX_BASE_DIR",
            value: root,
        },
        AgentOption {
            flag: "--workdir",
            env: "PADDOCK_AGENT_WORKDIR",
            value: workdir,
        },
    ];
    if spec.command.is_some() {
        options.push(AgentOption {
            flag: "--main-log",
            env: "PADDOCK_AGENT_MAIN_LOG",
            value: format!("{RUN_DIR}/{MAIN_LOG}"),
        });
        options.push(AgentOption {
            flag: "--main-status",
            env: "PADDOCK_AGENT_MAIN_STATUS",
            value: format!("{RUN_DIR}/{MAIN_STATUS}"),
        });
    }
    if spec.runtime_class == crate::spec::RuntimeClass::Bwrap {
        options.push(AgentOption {
            flag: "--landlock",
            env: "PADDOCK_AGENT_LANDLOCK",
            value: "required".to_owned(),
        });
        options.push(AgentOption {
            flag: "--writable",
            env: "PADDOCK_AGENT_WRITABLE",
            value: spec.writable_paths().join(","),
        });
    }
    options
}

/// The main process's output, in the run directory.
pub const MAIN_LOG: &str = "main.log";
/// The main process's exit status (JSON `{"exit_code", "signal", "finished_at"}`), written by the
/// agent when the main process ends, in the run directory.
pub const MAIN_STATUS: &str = "main-status.json";

/// The agent's argv: its path, [`agent_options`] as flags, and the main command after `--`.
pub fn agent_argv(spec: &WorkloadSpec) -> Vec<String> {
    let mut argv = vec![AGENT_PATH.to_owned()];
    for option in agent_options(spec) {
        argv.push(option.flag.to_owned());
        argv.push(option.value);
    }
    if let Some(main) = &spec.command {
        argv.push("--".to_owned());
        argv.extend(main.iter().cloned());
    }
    argv
}

/// [`agent_options`] as environment variables, for an agent started as bare `AGENT_PATH`; the
/// main command travels as a JSON array.
pub fn agent_env(spec: &WorkloadSpec) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = agent_options(spec)
        .into_iter()
        .map(|o| (o.env, o.value))
        .collect();
    if let Some(main) = &spec.command {
        env.push((
            "PADDOCK_AGENT_MAIN_ARGV",
            serde_json::to_string(main).unwrap_or_default(),
        ));
    }
    env
}

/// Completes a spec from its image's config with Kubernetes' rules: `command` replaces the
/// Entrypoint, `args` the Cmd; the result's `command` is the full main argv and `args` is `None`.
/// Image env comes first and the spec's env wins; `PATH` and `HOME` get defaults; the user and
/// working directory fall back to the image's.
pub fn resolve_with_image(spec: &WorkloadSpec, image: &ImageConfig) -> WorkloadSpec {
    let mut out = spec.clone();
    let main: Vec<String> = match (&spec.command, &spec.args) {
        (Some(command), args) => command
            .iter()
            .chain(args.iter().flatten())
            .cloned()
            .collect(),
        (None, Some(args)) => image.entrypoint.iter().chain(args).cloned().collect(),
        (None, None) => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
    };
    out.command = if main.is_empty() || spec.idle {
        None
    } else {
        Some(main)
    };
    out.args = None;
    let mut env: Vec<EnvVar> = Vec::new();
    for var in image.env.iter().chain(&spec.env) {
        match env.iter_mut().find(|e| e.name == var.name) {
            Some(existing) => existing.value.clone_from(&var.value),
            None => env.push(var.clone()),
        }
    }
    if out.run_as_user.is_none() {
        out.run_as_user = image.uid;
    }
    if out.run_as_group.is_none() {
        out.run_as_group = image.gid;
    }
    if !env.iter().any(|e| e.name == "PATH") {
        env.push(EnvVar {
            name: "PATH".into(),
            value: DEFAULT_PATH.into(),
        });
    }
    if !env.iter().any(|e| e.name == "HOME") {
        let home = match (&spec.image, out.run_as_user.unwrap_or(0)) {
            (ImageRef::Host, _) => "/tmp",
            (_, 0) => "/root",
            _ => "/",
        };
        env.push(EnvVar {
            name: "HOME".into(),
            value: home.into(),
        });
    }
    out.env = env;
    if out.working_dir.is_none() {
        out.working_dir = image.working_dir.clone().filter(|d| d.starts_with('/'));
    }
    // Every sandbox gets a writable workspace, the commands' working directory unless the spec
    // or the image names another, unless the spec mounts its own volume there. It goes first,
    // so volumes mounted inside it stay visible.
    let own_workspace = out
        .mounts
        .iter()
        .any(|m| m.container_path.trim_end_matches('/') == WORKSPACE);
    if !own_workspace {
        out.mounts.insert(
            0,
            VolumeMount {
                name: WORKSPACE_VOLUME.into(),
                container_path: WORKSPACE.into(),
                read_only: false,
                sub_path: None,
                source: VolumeSource::EmptyDir,
            },
        );
    }
    if out.working_dir.is_none() {
        out.working_dir = Some(WORKSPACE.into());
    }
    out
}

/// Why the agent did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum ReadinessError {
    #[error("the agent did not answer GET /v1/health on {socket} within {waited:?}: {last}")]
    Timeout {
        socket: String,
        waited: Duration,
        last: String,
    },
    #[error("the sandbox exited before its agent became ready")]
    Exited,
}

/// A response from the agent: status code and body.
#[derive(Debug, Clone)]
pub struct AgentResponse {
    pub status: u16,
    pub body: Bytes,
}

/// One HTTP/1.1 request to the agent over its unix socket.
///
/// # Errors
/// Connection or protocol errors, as text.
pub async fn agent_request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<Bytes>,
) -> Result<AgentResponse, String> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "agent");
    if body.is_some() {
        request = request.header(http::header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    drop(sender);
    driver.abort();
    Ok(AgentResponse { status, body })
}

/// Polls the agent's health endpoint until it answers 200, the sandbox dies, or `timeout`.
/// `alive` is asked now and then whether the sandbox still runs, to fail fast.
///
/// # Errors
/// [`ReadinessError`] naming the socket and the last failure.
pub async fn wait_ready<F>(
    socket: &Path,
    timeout: Duration,
    mut alive: F,
) -> Result<(), ReadinessError>
where
    F: FnMut() -> bool,
{
    let start = Instant::now();
    let mut last: String;
    let mut attempt: u32 = 0;
    loop {
        if socket.exists() {
            match agent_request(socket, "GET", "/v1/health", None).await {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => last = format!("status {}", r.status),
                Err(e) => last = e,
            }
        } else {
            last = "the socket does not exist yet".to_owned();
        }
        attempt += 1;
        if attempt.is_multiple_of(16) && !alive() {
            return Err(ReadinessError::Exited);
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(ReadinessError::Timeout {
                socket: socket.display().to_string(),
                waited,
                last,
            });
        }
        // Tight while a sandbox usually becomes ready (a gVisor boot takes 100–250 ms), then
        // back off.
        let pause = if waited < Duration::from_millis(500) {
            2
        } else {
            10
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RuntimeClass;

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into(), "--port=1".into()],
            env: vec![
                EnvVar {
                    name: "PATH".into(),
                    value: "/img/bin".into(),
                },
                EnvVar {
                    name: "A".into(),
                    value: "img".into(),
                },
            ],
            working_dir: Some("/work".into()),
            uid: Some(1000),
            gid: Some(100),
        }
    }

    fn spec() -> WorkloadSpec {
        WorkloadSpec::new(RuntimeClass::Gvisor, ImageRef::parse("busybox").unwrap())
    }

    #[test]
    fn image_entrypoint_and_cmd_run_when_the_pod_sets_neither() {
        let r = resolve_with_image(&spec(), &image());
        assert_eq!(r.command.unwrap(), vec!["/entry", "serve", "--port=1"]);
        assert_eq!(r.working_dir.as_deref(), Some("/work"));
        assert_eq!((r.run_as_user, r.run_as_group), (Some(1000), Some(100)));
    }

    #[test]
    fn args_replace_cmd_and_command_replaces_entrypoint() {
        let mut s = spec();
        s.args = Some(vec!["x".into()]);
        assert_eq!(
            resolve_with_image(&s, &image()).command.unwrap(),
            vec!["/entry", "x"]
        );
        s.command = Some(vec!["/bin/sh".into()]);
        assert_eq!(
            resolve_with_image(&s, &image()).command.unwrap(),
            vec!["/bin/sh", "x"]
        );
        s.args = None;
        assert_eq!(
            resolve_with_image(&s, &image()).command.unwrap(),
            vec!["/bin/sh"]
        );
    }

    #[test]
    fn pod_env_wins_over_image_env_and_home_is_defaulted() {
        let mut s = spec();
        s.env.push(EnvVar {
            name: "A".into(),
            value: "pod".into(),
        });
        s.run_as_user = Some(0);
        let r = resolve_with_image(&s, &image());
        let get = |n: &str| r.env.iter().find(|e| e.name == n).map(|e| e.value.clone());
        assert_eq!(get("A").as_deref(), Some("pod"));
        assert_eq!(get("PATH").as_deref(), Some("/img/bin"));
        assert_eq!(get("HOME").as_deref(), Some("/root"));
        assert_eq!(
            r.run_as_user,
            Some(0),
            "the pod's runAsUser wins over the image's User"
        );
    }

    #[test]
    fn agent_argv_listens_on_the_run_dir_socket_and_never_on_tcp() {
        let mut s = spec();
        s.working_dir = Some("/app".into());
        let argv = agent_argv(&s);
        assert_eq!(
            argv,
            vec![
                "/.paddock/bin/agent",
                "--unix",
                "/.paddock/run/agent.sock",
                "--root-dir",
                "/app",
                "--base-dir",
                "/app",
                "--workdir",
                "/app"
            ]
        );
        assert!(!argv.iter().any(|a| a == "--listen"));
        let env = agent_env(&s);
        assert!(env.contains(&("PADDOCK_AGENT_UNIX", "/.paddock/run/agent.sock".to_owned())));
        assert!(env.contains(&("PADDOCK_AGENT_ROOT_DIR", "/app".to_owned())));
        assert_eq!(env.len(), argv.len() / 2, "every flag has its variable");
    }

    #[test]
    fn every_sandbox_gets_a_writable_workspace_where_commands_start() {
        let r = resolve_with_image(&spec(), &ImageConfig::default());
        assert_eq!(r.working_dir.as_deref(), Some(WORKSPACE));
        let first = &r.mounts[0];
        assert_eq!(first.container_path, WORKSPACE);
        assert!(!first.read_only);
        assert_eq!(first.source, VolumeSource::EmptyDir);
        // Files are addressed from `/`; commands start in the workspace.
        let env = agent_env(&r);
        assert!(env.contains(&("PADDOCK_AGENT_ROOT_DIR", "/".to_owned())));
        assert!(env.contains(&("PADDOCK_AGENT_WORKDIR", WORKSPACE.to_owned())));

        // The spec's own volume at /workspace wins, and nothing is added beside it.
        let mut own = spec();
        own.mounts.push(VolumeMount {
            name: "src".into(),
            container_path: "/workspace/".into(),
            read_only: true,
            sub_path: None,
            source: VolumeSource::EmptyDir,
        });
        let r = resolve_with_image(&own, &ImageConfig::default());
        assert_eq!(r.mounts.len(), 1);
        assert_eq!(r.mounts[0].name, "src");

        // An image's working directory stays the commands' (and the files') root.
        let image = ImageConfig {
            working_dir: Some("/app".into()),
            ..ImageConfig::default()
        };
        let r = resolve_with_image(&spec(), &image);
        assert_eq!(r.working_dir.as_deref(), Some("/app"));
        assert!(r.mounts.iter().any(|m| m.container_path == WORKSPACE));
    }
}
