//! postie: the administration command (OAuth2 authorization, the system keyring). All logic is
//! in the library.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(postie::cli::postie::main());
}
