//! DIMSE command sets (PS3.7 9.3, 9.1): the C-STORE, C-ECHO and C-CANCEL requests
//! read, and their responses written, in implicit VR little endian.

use super::*;

/// The command elements we care about.
#[derive(Debug)]
pub(super) struct Command {
    pub(super) field: u16,
    pub(super) message_id: u16,
    pub(super) sop_class: String,
    pub(super) sop_instance: String,
    pub(super) has_data_set: bool,
}

/// Parse a command set (group 0000, implicit VR little endian).
pub(super) fn parse_command(bytes: &[u8]) -> Result<Command, String> {
    let mut field = None;
    let mut message_id = None;
    let mut sop_class = String::new();
    let mut sop_instance = String::new();
    let mut data_set_type = None;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let head = bytes
            .get(pos..pos + 8)
            .ok_or("truncated command element header")?;
        let group = u16::from_le_bytes([head[0], head[1]]);
        let element = u16::from_le_bytes([head[2], head[3]]);
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if group != 0x0000 {
            return Err(format!(
                "element ({group:04X},{element:04X}) in a command set"
            ));
        }
        if len == u32::MAX {
            return Err("undefined length in a command set".into());
        }
        let start = pos + 8;
        let end = start
            .checked_add(len as usize)
            .filter(|&e| e <= bytes.len())
            .ok_or("truncated command element value")?;
        let value = &bytes[start..end];
        let us = || -> Result<u16, String> {
            value
                .get(..2)
                .map(|v| u16::from_le_bytes([v[0], v[1]]))
                .ok_or_else(|| format!("short value in (0000,{element:04X})"))
        };
        let text = || trim_uid(&String::from_utf8_lossy(value)).to_string();
        match element {
            0x0002 => sop_class = text(),
            0x0100 => field = Some(us()?),
            0x0110 => message_id = Some(us()?),
            0x0800 => data_set_type = Some(us()?),
            0x1000 => sop_instance = text(),
            _ => {}
        }
        pos = end;
    }
    let field = field.ok_or("command without Command Field")?;
    let message_id = match (message_id, field) {
        (Some(id), _) => id,
        (None, C_CANCEL_RQ) => 0,
        (None, _) => return Err("command without Message ID".into()),
    };
    let data_set_type = data_set_type.ok_or("command without Command Data Set Type")?;
    Ok(Command {
        field,
        message_id,
        sop_class,
        sop_instance,
        has_data_set: data_set_type != NO_DATA_SET,
    })
}

pub(super) fn put_element(out: &mut Vec<u8>, element: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

pub(super) fn padded(s: &str, pad: u8) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(pad);
    }
    v
}

/// Build a response command set (implicit VR little endian).
pub(super) fn build_response(
    field: u16,
    message_id: u16,
    sop_class: &str,
    sop_instance: Option<&str>,
    status: u16,
    comment: Option<&str>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    if !sop_class.is_empty() {
        put_element(&mut body, 0x0002, &padded(sop_class, 0));
    }
    put_element(&mut body, 0x0100, &field.to_le_bytes());
    put_element(&mut body, 0x0120, &message_id.to_le_bytes());
    put_element(&mut body, 0x0800, &NO_DATA_SET.to_le_bytes());
    put_element(&mut body, 0x0900, &status.to_le_bytes());
    if let Some(comment) = comment {
        // LO: at most 64 characters, no backslash, printable ASCII
        let clean: String = comment
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .map(|c| if c == '\\' { '/' } else { c })
            .take(64)
            .collect();
        put_element(&mut body, 0x0902, &padded(clean.trim_end(), b' '));
    }
    if let Some(instance) = sop_instance.filter(|s| !s.is_empty()) {
        put_element(&mut body, 0x1000, &padded(instance, 0));
    }
    let mut out = Vec::with_capacity(body.len() + 12);
    put_element(&mut out, 0x0000, &(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}
