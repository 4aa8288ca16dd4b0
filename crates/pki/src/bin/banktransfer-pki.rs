//! `banktransfer-pki init --dir data/pki`: creates the development PKI (only what is
//! missing). `banktransfer-pki token --dir data/pki --user alice`: prints a user token.

use std::path::PathBuf;

use banktransfer_pki::token::{TokenSpec, mint_in_dir};
use clap::{Parser, Subcommand};
use service_kit::identity::{TOKEN_AUDIENCE_DEFAULT, TOKEN_ISSUER_DEFAULT};

#[derive(Parser)]
#[command(about = "BankTransfer development PKI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the CA, service and operator certificates and the token key (if missing).
    Init {
        #[arg(long, default_value = "data/pki")]
        dir: PathBuf,
    },
    /// Print a bearer token (JWT, EdDSA) for a user.
    Token {
        #[arg(long, default_value = "data/pki")]
        dir: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long, default_value_t = 3600)]
        ttl_s: u64,
        #[arg(long, default_value = TOKEN_ISSUER_DEFAULT)]
        issuer: String,
        #[arg(long, default_value = TOKEN_AUDIENCE_DEFAULT)]
        audience: String,
    },
}

fn main() -> anyhow::Result<()> {
    // An operator tool at the edge: the one place here that reads the wall clock; the
    // library takes the time as a parameter.
    let now = time::OffsetDateTime::now_utc();
    match Cli::parse().command {
        Command::Init { dir } => {
            let report = banktransfer_pki::init::init(&dir, now)?;
            for path in &report.created {
                eprintln!("created {}", path.display());
            }
            // Silent when nothing changed: `make token` runs init first and must print
            // nothing but the token.
            if !report.created.is_empty() {
                eprintln!(
                    "PKI in {}: {} files created, {} kept",
                    dir.display(),
                    report.created.len(),
                    report.kept.len()
                );
            }
        }
        Command::Token {
            dir,
            user,
            ttl_s,
            issuer,
            audience,
        } => {
            let now_s = u64::try_from(now.unix_timestamp())?;
            let spec = TokenSpec {
                user_id: user,
                issuer,
                audience,
                ttl_s,
                now_s,
            };
            println!("{}", mint_in_dir(&dir, &spec)?);
        }
    }
    Ok(())
}
