//! Links to the radio: serial ports, KISS over TCP, and the channel model used by the
//! simulator. The only code that does I/O on links.

pub mod sim;
