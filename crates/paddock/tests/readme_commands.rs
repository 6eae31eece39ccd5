//! Every `paddock …` command in the README and the docs parses with the real command line:
//! a user who copies one must not meet "unexpected argument".
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shell code blocks (```sh, ```bash, ```shell, ```console) of a Markdown text, with the
/// line each starts on.
fn shell_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        match &mut current {
            None => {
                if let Some(lang) = fence.strip_prefix("```")
                    && ["sh", "bash", "shell", "console"].contains(&lang.trim())
                {
                    current = Some((i + 2, String::new()));
                }
            }
            Some((_, text)) => {
                if fence.starts_with("```") {
                    blocks.extend(current.take());
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    blocks
}

/// Splits shell text into simple commands, each as words: quotes and backslashes as the shell
/// reads them, `#` comments dropped, `;`, `&&`, `||`, `|`, `&` and newlines separating commands.
/// `$(…)` and `$VAR` stay as they are, one word (their value doesn't change how paddock parses).
fn simple_commands(text: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    // The next word is a redirection's target (`> file`, `2>&1`), not an argument.
    let mut redirect = false;
    let mut chars = text.chars().peekable();
    fn end_word(word: &mut Option<String>, words: &mut Vec<String>, redirect: &mut bool) {
        if let Some(w) = word.take()
            && !std::mem::take(redirect)
        {
            words.push(w);
        }
    }
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.push(c);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(c) => word.get_or_insert_with(String::new).push(c),
            },
            '$' if chars.peek() == Some(&'(') => {
                let w = word.get_or_insert_with(String::new);
                w.push('$');
                let mut depth = 0;
                for c in chars.by_ref() {
                    w.push(c);
                    match c {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            '#' if word.is_none() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                end_word(&mut word, &mut words, &mut redirect);
                commands.push(std::mem::take(&mut words));
            }
            ';' | '&' | '|' | '\n' => {
                while matches!(chars.peek(), Some('&' | '|')) {
                    chars.next();
                }
                end_word(&mut word, &mut words, &mut redirect);
                commands.push(std::mem::take(&mut words));
            }
            '>' | '<' => {
                if word
                    .as_deref()
                    .is_some_and(|w| w.chars().all(|c| c.is_ascii_digit()))
                {
                    word = None;
                }
                end_word(&mut word, &mut words, &mut redirect);
                while matches!(chars.peek(), Some('>' | '&')) {
                    chars.next();
                }
                redirect = true;
            }
            c if c.is_whitespace() => end_word(&mut word, &mut words, &mut redirect),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    end_word(&mut word, &mut words, &mut redirect);
    commands.push(words);
    commands.retain(|c| !c.is_empty());
    commands
}

/// The `paddock` invocations of a shell block: leading `VAR=value` and `sudo` skipped, the
/// program named `paddock` or a path ending in `/paddock`.
fn paddock_commands(text: &str) -> Vec<Vec<String>> {
    simple_commands(text)
        .into_iter()
        .filter_map(|words| {
            let start = words
                .iter()
                .position(|w| !(w.contains('=') && !w.starts_with('-') || w == "sudo"))?;
            let program = &words[start];
            (program == "paddock" || program.ends_with("/paddock")).then(|| words[start..].to_vec())
        })
        .collect()
}

fn documents() -> Vec<PathBuf> {
    let mut docs = vec![
        repo().join("README.md"),
        repo().join("sdk/python/README.md"),
    ];
    let mut in_docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    in_docs.sort();
    docs.extend(in_docs);
    docs
}

#[test]
fn every_paddock_command_in_the_readme_and_docs_parses() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for doc in documents() {
        let markdown = std::fs::read_to_string(&doc).unwrap();
        for (line, block) in shell_blocks(&markdown) {
            for command in paddock_commands(&block) {
                checked += 1;
                if let Err(e) = paddock_cli::check_command_line(&command) {
                    let first = e.lines().next().unwrap_or_default().to_owned();
                    failures.push(format!(
                        "{} (block at line {line}): {}\n    {first}",
                        doc.strip_prefix(repo()).unwrap_or(&doc).display(),
                        command.join(" ")
                    ));
                }
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} paddock commands found: is the extraction broken?"
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} documented commands do not parse:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_extraction_reads_commands_as_the_shell_does() {
    let text = "X=1 sudo paddock run -v \"$PWD:/w\" -- sh -c 'echo a; b' # a comment; paddock nope\n\
                paddock sandbox pause dev; paddock sandbox resume dev && echo ok | paddock exec \\\n  dev -- cat\n\
                head -c 32 /dev/urandom | base64 > secret\n\
                paddock crds > crds.yaml 2>&1; paddock doctor 2>/dev/null\n";
    assert_eq!(
        paddock_commands(text),
        vec![
            vec![
                "paddock",
                "run",
                "-v",
                "$PWD:/w",
                "--",
                "sh",
                "-c",
                "echo a; b"
            ],
            vec!["paddock", "sandbox", "pause", "dev"],
            vec!["paddock", "sandbox", "resume", "dev"],
            vec!["paddock", "exec", "dev", "--", "cat"],
            vec!["paddock", "crds"],
            vec!["paddock", "doctor"],
        ]
    );
}

#[test]
fn a_command_the_parser_rejects_is_reported() {
    let bad: Vec<String> = ["paddock", "sandbox", "create", "--nmae", "dev"]
        .map(str::to_owned)
        .to_vec();
    let e = paddock_cli::check_command_line(&bad).unwrap_err();
    assert!(e.contains("--nmae"), "{e}");
    let good: Vec<String> = ["paddock", "sandbox", "create", "--name", "dev"]
        .map(str::to_owned)
        .to_vec();
    paddock_cli::check_command_line(&good).unwrap();
}
