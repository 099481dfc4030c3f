//! CRC-16/IBM (also called CRC-16/ARC): the checksum of a Teltonika TCP packet's data.
//!
//! Polynomial 0x8005 reflected (0xA001), initial value 0, no final XOR. A 256-entry table
//! built at compile time: the gateway checks every packet, so the bitwise loop's eight
//! branches per byte are worth avoiding.

const TABLE: [u16; 256] = build_table();

const fn build_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u16;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// The CRC-16/IBM of `data` (check value 0xBB3D for ASCII `123456789`).
pub fn crc16_ibm(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        (crc >> 8) ^ TABLE[usize::from((crc ^ u16::from(b)) as u8)]
    })
}
