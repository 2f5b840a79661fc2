//! (being written) native TOML reader
use super::ConfigError;
use crate::account::{Account, Env};
use std::path::Path;
pub struct ParsedToml {
    pub accounts: Vec<Account>,
    pub has_password: bool,
    pub default_account: Option<String>,
}
pub fn parse(_text: &str, _path: &Path, _env: &Env) -> Result<ParsedToml, ConfigError> {
    Ok(ParsedToml {
        accounts: vec![],
        has_password: false,
        default_account: None,
    })
}
