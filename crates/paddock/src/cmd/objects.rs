//! `paddock apply`, `paddock get`, `paddock delete`: the four kinds, as kubectl handles them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use http::Method;
use paddock_api::crd::columns;
use paddock_api::kinds::{Kind, Version};
use serde_json::Value;

use crate::cmd::client::{ClientArgs, explain};
use crate::cmd::output::{Output, list_of, print_json};
use crate::cmd::sandbox::print_table;
use crate::input::read_sources;

fn kind_of(resource: &str) -> Result<Kind> {
    Kind::from_resource_name(resource).ok_or_else(|| {
        anyhow::anyhow!("unknown resource {resource:?}: use sandboxes, sandboxtemplates, sandboxclaims or sandboxwarmpools (or swp)")
    })
}

fn collection(kind: Kind, version: Version, ns: Option<&str>) -> String {
    match ns {
        Some(ns) => format!(
            "/apis/{}/{}/namespaces/{ns}/{}",
            kind.group(),
            version.as_str(),
            kind.plural()
        ),
        None => format!(
            "/apis/{}/{}/{}",
            kind.group(),
            version.as_str(),
            kind.plural()
        ),
    }
}

/// `paddock apply -f`.
pub async fn apply(client_args: ClientArgs, files: Vec<PathBuf>) -> Result<ExitCode> {
    let client = client_args.connect()?;
    for source in read_sources(&files)? {
        let results = client
            .apply(&source.text, Some(&client_args.namespace))
            .await
            .map_err(|e| {
                let mut msg = format!("{}: {}", source.name, e.message);
                if let Some(Value::Array(docs)) = &e.details {
                    for d in docs {
                        let object = d.get("object").and_then(Value::as_str).unwrap_or("object");
                        for p in d
                            .get("details")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            let line = p
                                .get("line")
                                .and_then(Value::as_u64)
                                .map(|l| format!(" (line {l})"))
                                .unwrap_or_default();
                            msg.push_str(&format!(
                                "\n  {object}: {}: {}{line}",
                                p.get("path").and_then(Value::as_str).unwrap_or(""),
                                p.get("message").and_then(Value::as_str).unwrap_or("")
                            ));
                        }
                    }
                }
                anyhow::anyhow!(msg)
            })?;
        for r in results {
            let kind = r.kind.unwrap_or_default().to_lowercase();
            println!("{kind}/{} {}", r.name.unwrap_or_default(), r.action);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn json_path(object: &Value, path: &str) -> String {
    // The printer columns use `.a.b` and `.status.conditions[?(@.type=='Ready')].field`.
    if let Some(rest) = path.strip_prefix(".status.conditions[?(@.type=='Ready')].") {
        return object
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| {
                c.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
            })
            .and_then(|c| c.get(rest))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .unwrap_or_default();
    }
    let pointer = path.replace('.', "/");
    match object.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn age(created: &str) -> String {
    let Ok(t) = created.parse::<jiff::Timestamp>() else {
        return "-".to_owned();
    };
    let s = jiff::Timestamp::now().duration_since(t).as_secs().max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// `paddock get KIND [NAME]`: what to show and how.
pub struct GetRequest {
    /// The kind, as typed.
    pub resource: String,
    /// One object, or all of them.
    pub name: Option<String>,
    /// `-o`.
    pub output: Output,
    /// The API version of what is printed.
    pub version: Version,
    /// `-A`.
    pub all_namespaces: bool,
    /// `--watch`: after the list, print each change until interrupted.
    pub watch: bool,
}

/// `paddock get KIND [NAME]`.
pub async fn get(client_args: ClientArgs, req: GetRequest) -> Result<ExitCode> {
    let client = client_args.connect()?;
    let kind = kind_of(&req.resource)?;
    let ns = (!req.all_namespaces).then_some(client_args.namespace.as_str());
    if req.name.is_some() && ns.is_none() {
        bail!("a name needs a namespace; drop -A");
    }
    // One object, or the list: what is printed whole (`-o json|yaml|jsonpath`), its items, and
    // the resourceVersion a watch starts after.
    let (whole, items) = match &req.name {
        Some(name) => {
            let object = client
                .object_call(
                    Method::GET,
                    &format!("{}/{name}", collection(kind, req.version, ns)),
                    None,
                )
                .await
                .map_err(explain)?;
            (object.clone(), vec![object])
        }
        None => {
            let list = client
                .object_call(Method::GET, &collection(kind, req.version, ns), None)
                .await
                .map_err(explain)?;
            let items: Vec<Value> = list
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut whole = list_of(items.clone());
            whole["metadata"] = list.get("metadata").cloned().unwrap_or_default();
            (whole, items)
        }
    };
    let printer = ObjectPrinter {
        kind,
        output: req.output.clone(),
        all_namespaces: req.all_namespaces,
    };
    match &req.output {
        Output::Table | Output::Wide => {
            if items.is_empty() && !req.watch {
                eprintln!("No {} found.", kind.plural());
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![printer.header()];
            rows.extend(items.iter().map(|o| printer.row(o)));
            print_table(&rows);
        }
        Output::Json => print_json(&whole)?,
        Output::Yaml => print!("{}", paddock_api::yaml::to_string(&whole)),
        Output::Name => {
            for o in &items {
                println!("{}", printer.name(o));
            }
        }
        Output::JsonPath(t) => println!("{}", t.render(&whole)),
    }
    if !req.watch {
        return Ok(ExitCode::SUCCESS);
    }
    let rv = whole
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    let mut watch = client
        .watch_objects(&collection(kind, req.version, ns), rv)
        .await
        .map_err(explain)?;
    while let Some(event) = watch.next().await {
        let event = event.map_err(explain)?;
        let Some(object) = event.get("object") else {
            continue;
        };
        if req
            .name
            .as_deref()
            .is_some_and(|n| object.pointer("/metadata/name").and_then(Value::as_str) != Some(n))
        {
            continue;
        }
        printer.print_change(object);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints objects of one kind in one `-o` format, whole or one change at a time.
struct ObjectPrinter {
    kind: Kind,
    output: Output,
    all_namespaces: bool,
}

impl ObjectPrinter {
    fn header(&self) -> Vec<String> {
        let cols = columns(self.kind, Version::V1beta1);
        let mut header: Vec<String> = vec!["NAME".to_owned()];
        if self.all_namespaces {
            header.insert(0, "NAMESPACE".to_owned());
        }
        header.extend(cols.iter().map(|c| c.name.to_uppercase()));
        if cols.is_empty() {
            header.push("AGE".to_owned());
        }
        if self.output == Output::Wide {
            header.push("MESSAGE".to_owned());
        }
        header
    }

    fn row(&self, item: &Value) -> Vec<String> {
        let cols = columns(self.kind, Version::V1beta1);
        let mut row = vec![json_path(item, ".metadata.name")];
        if self.all_namespaces {
            row.insert(0, json_path(item, ".metadata.namespace"));
        }
        for c in cols {
            let v = json_path(item, c.json_path);
            row.push(if c.type_ == "date" {
                age(&v)
            } else if v.is_empty() {
                "<none>".to_owned()
            } else {
                v
            });
        }
        if cols.is_empty() {
            row.push(age(&json_path(item, ".metadata.creationTimestamp")));
        }
        if self.output == Output::Wide {
            let m = json_path(item, ".status.conditions[?(@.type=='Ready')].message");
            row.push(if m.is_empty() { "<none>".to_owned() } else { m });
        }
        row
    }

    fn name(&self, item: &Value) -> String {
        format!(
            "{}.{}/{}",
            self.kind.singular(),
            self.kind.group(),
            json_path(item, ".metadata.name")
        )
    }

    /// One watch event's object: a row (no header), a document, a name or a rendered template.
    fn print_change(&self, object: &Value) {
        match &self.output {
            Output::Table | Output::Wide => println!("{}", self.row(object).join("   ")),
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(object).unwrap_or_default()
            ),
            Output::Yaml => print!("---\n{}", paddock_api::yaml::to_string(object)),
            Output::Name => println!("{}", self.name(object)),
            Output::JsonPath(t) => println!("{}", t.render(object)),
        }
    }
}

/// `paddock delete KIND NAME...` or `paddock delete -f FILE`.
pub async fn delete(
    client_args: ClientArgs,
    resource: Option<String>,
    names: Vec<String>,
    files: Vec<PathBuf>,
) -> Result<ExitCode> {
    let client = client_args.connect()?;
    let mut targets: Vec<(Kind, String, String)> = Vec::new();
    if !files.is_empty() {
        for source in read_sources(&files)? {
            for doc in paddock_api::yaml::parse_documents(&source.text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", source.name))?
            {
                let kind = doc
                    .value
                    .get("kind")
                    .and_then(Value::as_str)
                    .and_then(Kind::from_kind);
                let name = doc.value.pointer("/metadata/name").and_then(Value::as_str);
                let ns = doc
                    .value
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or(&client_args.namespace);
                match (kind, name) {
                    (Some(k), Some(n)) => targets.push((k, ns.to_owned(), n.to_owned())),
                    _ => bail!(
                        "{}: a document has no known kind or no metadata.name",
                        source.name
                    ),
                }
            }
        }
    } else {
        let Some(resource) = resource else {
            bail!("name what to delete: paddock delete KIND NAME, or -f FILE")
        };
        let kind = kind_of(&resource)?;
        if names.is_empty() {
            bail!("name the {} to delete", kind.plural());
        }
        targets.extend(
            names
                .into_iter()
                .map(|n| (kind, client_args.namespace.clone(), n)),
        );
    }
    for (kind, ns, name) in targets {
        client
            .object_call(
                Method::DELETE,
                &format!("{}/{name}", collection(kind, Version::V1beta1, Some(&ns))),
                None,
            )
            .await
            .map_err(explain)?;
        println!("{}/{name} deleted", kind.singular());
    }
    Ok(ExitCode::SUCCESS)
}
