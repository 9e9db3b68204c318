//! `radhub users`: add, list, disable, enable, passwd, role, token, revoke.
//! Passwords are read from the first line of standard input, never from
//! arguments (which other users of the machine can see).

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::auth::{Auth, Role};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Add a user; the password is the first line of standard input.
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: Role,
    },
    /// List users (no secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop a user signing in; ends their sessions and tokens at once.
    Disable {
        name: String,
    },
    Enable {
        name: String,
    },
    /// Set a new password (first line of standard input); ends their sessions.
    Passwd {
        name: String,
    },
    /// Change a user's role.
    Role {
        name: String,
        #[arg(value_enum)]
        role: Role,
    },
    /// Make an API bearer token for a user; printed once, on standard output.
    Token {
        name: String,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Revoke every API token of a user.
    Revoke {
        name: String,
    },
}

fn password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub fn run(data: &Path, a: Args) -> anyhow::Result<ExitCode> {
    let db = crate::app_db::open(data).map_err(|e| super::in_use(data, e.into()))?;
    let auth = Auth::new(&db)?;
    match a.command {
        Command::Add { name, role } => {
            auth.add_user(&name, role, &password()?)?;
            eprintln!("radhub: added {name} ({})", role.as_str());
        }
        Command::List { json } => {
            let users = auth.list()?;
            if json {
                super::print_json(&users)?;
            } else {
                for u in users {
                    println!("{:<24} {:<12} {:<9} tokens: {}", u.name, u.role.as_str(), if u.disabled { "disabled" } else { "active" }, u.tokens);
                }
            }
        }
        Command::Disable { name } => auth.set_disabled(&name, true)?,
        Command::Enable { name } => auth.set_disabled(&name, false)?,
        Command::Passwd { name } => auth.set_password(&name, &password()?)?,
        Command::Role { name, role } => auth.set_role(&name, role)?,
        Command::Token { name, label } => println!("{}", auth.new_token(&name, &label)?),
        Command::Revoke { name } => eprintln!("radhub: revoked {} token(s) of {name}", auth.revoke_tokens(&name)?),
    }
    Ok(ExitCode::SUCCESS)
}
