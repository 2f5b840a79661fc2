//! rfetch: fetch mail over POP3/IMAP and deliver it locally (fetchmail drop-in). All logic is in the library.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(postie::cli::rfetch::main());
}
