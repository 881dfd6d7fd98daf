//! DICOM C-STORE SCP (with C-ECHO) receiver built on `dicom-ul`.
//!
//! Every association runs in a thread of its own. Data set fragments (P-DATA
//! PDVs) are streamed straight into a Part-10 file in the staging directory
//! (preamble, `DICM`, file meta group, then the data set bytes exactly as they
//! arrive in the negotiated transfer syntax), so objects of any size are
//! received with bounded memory. A finished object is handed to the [`Sink`],
//! whose verdict becomes the C-STORE response status.
//!
//! Association negotiation is done by `dicom_ul::ServerAssociationOptions`.
//! Because `dicom-ul` can only accept an explicit list of abstract syntaxes
//! (or all of them, "promiscuous"), the A-ASSOCIATE-RQ is first *peeked* (not
//! consumed) from the socket so that the list given to `dicom-ul` is exactly
//! the proposed abstract syntaxes we serve: Verification and every storage SOP
//! class (`1.2.840.10008.5.1.4.1.1.*`).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dicom_object::FileMetaTableBuilder;
use dicom_ul::Pdu;
use dicom_ul::association::server::AccessControl;
use dicom_ul::association::{Association, ServerAssociation, ServerAssociationOptions};
use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason,
    AssociationRJServiceUserReason, AssociationRJSource, PDataValue, PDataValueType,
    PresentationContextNegotiated, PresentationContextResultReason, UserIdentity,
};
use tracing::{debug, info, warn};

/// One object received by C-STORE, written as a DICOM Part-10 file in staging.
pub struct Received {
    pub path: std::path::PathBuf,
    pub calling_ae: String,
    /// size of the file at `path` (preamble + file meta group + data set)
    #[allow(dead_code)]
    pub bytes: u64,
}

/// What the receiver does with a received file: Ok = accepted (C-STORE success),
/// Err(reason) = refused (the file is removed; C-STORE answers with a failure status 0xA700 or 0xC000 and the reason in Error Comment (0000,0902)).
pub type Sink = std::sync::Arc<dyn Fn(Received) -> Result<(), String> + Send + Sync>;

pub struct Options {
    pub ae_title: String,
    pub staging: std::path::PathBuf,
    pub max_bytes: u64,
    pub max_associations: usize,
    pub allowed_calling: Vec<String>, /* empty = any */
}

/// Verification SOP class.
const VERIFICATION: &str = "1.2.840.10008.1.1";
/// Prefix shared by the storage SOP classes.
const STORAGE_PREFIX: &str = "1.2.840.10008.5.1.4.1.1.";

/// Transfer syntaxes accepted for every presentation context.
///
/// Note: `dicom-ul` only accepts transfer syntaxes that the
/// `dicom-transfer-syntax-registry` does not mark "unsupported"; Deflated
/// Explicit VR LE is only negotiated when that crate's `deflate` feature is on.
const TRANSFER_SYNTAXES: &[&str] = &[
    "1.2.840.10008.1.2",      // implicit VR little endian
    "1.2.840.10008.1.2.1",    // explicit VR little endian
    "1.2.840.10008.1.2.1.99", // deflated explicit VR little endian
    "1.2.840.10008.1.2.4.50", // JPEG baseline
    "1.2.840.10008.1.2.4.57", // JPEG lossless
    "1.2.840.10008.1.2.4.70", // JPEG lossless SV1
    "1.2.840.10008.1.2.5",    // RLE lossless
    "1.2.840.10008.1.2.4.80", // JPEG-LS lossless
    "1.2.840.10008.1.2.4.81", // JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90", // JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91", // JPEG 2000
];

/// Implementation class UID written to the file meta group.
const IMPLEMENTATION_CLASS_UID: &str = "2.25.211958474310478315229307542118650721497";
const IMPLEMENTATION_VERSION_NAME: &str = "CASECAST";

/// Largest PDU we accept (announced in the A-ASSOCIATE-AC, enforced strictly).
const MAX_PDU: u32 = 64 * 1024;
/// Socket read/write timeout: a silent peer does not hold a thread forever.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout for the short exchange with a peer that is turned away (busy).
const REJECT_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many connections are being turned away at once; beyond that
/// the TCP connection is simply closed.
const MAX_REJECTORS: usize = 8;
/// A command set larger than this is a protocol violation.
const MAX_COMMAND_BYTES: usize = 64 * 1024;

const STATUS_SUCCESS: u16 = 0x0000;
const STATUS_SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
const STATUS_UNRECOGNIZED_OPERATION: u16 = 0x0211;
const STATUS_OUT_OF_RESOURCES: u16 = 0xA700;
const STATUS_CANNOT_UNDERSTAND: u16 = 0xC000;

const C_STORE_RQ: u16 = 0x0001;
const C_ECHO_RQ: u16 = 0x0030;
const C_CANCEL_RQ: u16 = 0x0FFF;
const NO_DATA_SET: u16 = 0x0101;

/// Accepts associations on `listener` in a thread of its own, each association in its own thread (at most max_associations at once; beyond that, reject the association politely).
pub fn spawn(
    listener: std::net::TcpListener,
    opts: Options,
    sink: Sink,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(false)?;
    std::fs::create_dir_all(&opts.staging)?;
    let shared = Arc::new(Shared {
        max_associations: opts.max_associations.max(1),
        opts,
        sink,
        active: Arc::new(AtomicUsize::new(0)),
        rejecting: Arc::new(AtomicUsize::new(0)),
    });
    if let Ok(addr) = listener.local_addr() {
        info!(
            %addr,
            ae_title = %shared.opts.ae_title,
            staging = %shared.opts.staging.display(),
            "DICOM C-STORE SCP listening"
        );
    }
    std::thread::Builder::new()
        .name("cstore-accept".into())
        .spawn(move || accept_loop(listener, shared))
}

struct Shared {
    opts: Options,
    max_associations: usize,
    sink: Sink,
    /// associations being served
    active: Arc<AtomicUsize>,
    /// connections being turned away
    rejecting: Arc<AtomicUsize>,
}

/// Decrements a counter when dropped (also on unwinding).
struct SlotGuard(Arc<AtomicUsize>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Take a slot from `counter` if fewer than `max` are in use.
fn try_take_slot(counter: &Arc<AtomicUsize>, max: usize) -> Option<SlotGuard> {
    if counter.fetch_add(1, Ordering::SeqCst) >= max {
        counter.fetch_sub(1, Ordering::SeqCst);
        None
    } else {
        Some(SlotGuard(counter.clone()))
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(conn) => conn,
            Err(e) => {
                // e.g. EMFILE, ECONNABORTED: do not spin
                warn!(error = %e, "DICOM listener: accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if let Some(slot) = try_take_slot(&shared.active, shared.max_associations) {
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name("cstore-assoc".into())
                .spawn(move || {
                    let _slot = slot;
                    serve_connection(stream, &shared);
                });
            if let Err(e) = spawned {
                warn!(%peer, error = %e, "DICOM: cannot start association thread");
            }
        } else if let Some(slot) = try_take_slot(&shared.rejecting, MAX_REJECTORS) {
            warn!(
                %peer,
                max = shared.max_associations,
                "DICOM: too many associations, rejecting"
            );
            let spawned = std::thread::Builder::new()
                .name("cstore-reject".into())
                .spawn(move || {
                    let _slot = slot;
                    reject_busy(stream);
                });
            if let Err(e) = spawned {
                warn!(%peer, error = %e, "DICOM: cannot start rejection thread");
            }
        } else {
            warn!(%peer, "DICOM: too many associations, dropping connection");
            drop(stream);
        }
    }
}

/// Answer an A-ASSOCIATE-RQ with A-ASSOCIATE-RJ (transient, local limit exceeded).
fn reject_busy(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(REJECT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REJECT_TIMEOUT));
    let mut header = [0u8; 6];
    if stream.read_exact(&mut header).is_err() {
        return;
    }
    let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
    if header[0] != 0x01 || len > MAX_PDU {
        return; // not an association request: just close
    }
    // consume the request, so that closing the socket does not reset it
    match io::copy(&mut (&stream).take(u64::from(len)), &mut io::sink()) {
        Ok(n) if n == u64::from(len) => {}
        _ => return,
    }
    let rj = Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(
            AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    });
    let mut out = Vec::new();
    if dicom_ul::write_pdu(&mut out, &rj).is_err() {
        return;
    }
    if stream.write_all(&out).and_then(|_| stream.flush()).is_err() {
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    // wait (bounded) for the peer to close, discarding anything it sends
    let _ = io::copy(&mut (&stream).take(1 << 20), &mut io::sink());
}

/// Access control: called AE must be ours; calling AE must be allowed.
struct AeAccess {
    allowed_calling: Vec<String>,
}

impl AccessControl for AeAccess {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if called_ae_title.trim() != this_ae_title.trim() {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if !self.allowed_calling.is_empty()
            && !self
                .allowed_calling
                .iter()
                .any(|a| a.trim() == calling_ae_title.trim())
        {
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

fn trim_uid(s: &str) -> &str {
    s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
}

fn is_storage(abstract_syntax: &str) -> bool {
    trim_uid(abstract_syntax).starts_with(STORAGE_PREFIX)
}

/// Wait (bounded) until one whole PDU is readable and return a copy of it
/// without consuming it from the socket.
fn peek_pdu(stream: &TcpStream, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 6];
    let mut have_header = false;
    loop {
        let n = stream.peek(&mut buf)?; // blocks (with read timeout) until data
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if n == buf.len() {
            if have_header {
                return Ok(buf);
            }
            let len = u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]);
            if len > MAX_PDU {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("first PDU too large ({len} bytes)"),
                ));
            }
            have_header = true;
            buf.resize(6 + len as usize, 0);
            if len == 0 {
                return Ok(buf);
            }
            continue;
        }
        if Instant::now() >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        // partial PDU in the socket buffer: wait for the rest
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The abstract syntaxes to accept for this request: the proposed ones that
/// are Verification or storage (plus Verification, so that `dicom-ul` always
/// has a non-empty list and answers the request properly).
fn acceptable_abstract_syntaxes(first_pdu: &[u8]) -> Vec<String> {
    let mut out = vec![VERIFICATION.to_string()];
    if let Ok(Some(Pdu::AssociationRQ(rq))) = dicom_ul::read_pdu(first_pdu, MAX_PDU, true) {
        for pc in rq.presentation_contexts {
            let uid = trim_uid(&pc.abstract_syntax);
            if is_storage(uid) && !out.iter().any(|u| u == uid) {
                out.push(uid.to_string());
            }
        }
    }
    out
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".to_string());
    let setup = stream
        .set_nonblocking(false)
        .and_then(|_| stream.set_read_timeout(Some(IO_TIMEOUT)))
        .and_then(|_| stream.set_write_timeout(Some(IO_TIMEOUT)));
    if let Err(e) = setup {
        warn!(%peer, error = %e, "DICOM: socket setup failed");
        return;
    }
    let first = match peek_pdu(&stream, Instant::now() + IO_TIMEOUT) {
        Ok(pdu) => pdu,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            warn!(%peer, "DICOM: timed out waiting for an association request");
            return;
        }
        Err(e) => {
            warn!(%peer, error = %e, "DICOM: no association request");
            return;
        }
    };

    let mut options = ServerAssociationOptions::new()
        .ae_access_control(AeAccess {
            allowed_calling: shared.opts.allowed_calling.clone(),
        })
        .ae_title(shared.opts.ae_title.clone())
        .max_pdu_length(MAX_PDU)
        .strict(true)
        .read_timeout(IO_TIMEOUT)
        .write_timeout(IO_TIMEOUT);
    for ts in TRANSFER_SYNTAXES {
        options = options.with_transfer_syntax(*ts);
    }
    for uid in acceptable_abstract_syntaxes(&first) {
        options = options.with_abstract_syntax(uid);
    }

    let mut association = match options.establish(stream) {
        Ok(a) => a,
        Err(dicom_ul::association::Error::Rejected { association_rj, .. }) => {
            warn!(%peer, reason = %association_rj.source, "DICOM: association rejected");
            return;
        }
        Err(e) => {
            warn!(%peer, error = %error_chain(&e), "DICOM: association failed");
            return;
        }
    };
    let calling_ae = association.peer_ae_title().to_string();
    let accepted = association
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .count();
    info!(%peer, %calling_ae, accepted_contexts = accepted, "DICOM: association accepted");

    let mut session = Session {
        shared,
        calling_ae: calling_ae.clone(),
        contexts: association.presentation_contexts().to_vec(),
        cmd: Vec::new(),
        cmd_pc: None,
        pending: None,
    };
    if let Err(reason) = run_association(&mut association, &mut session) {
        warn!(%peer, %calling_ae, %reason, "DICOM: association ended abnormally");
    }
    // `session` drops here: an unfinished staging file is removed
}

/// Drive one established association until release/abort/error.
fn run_association(
    association: &mut ServerAssociation<TcpStream>,
    session: &mut Session<'_>,
) -> Result<(), String> {
    loop {
        let pdu = association
            .receive()
            .map_err(|e| format!("receive failed: {}", error_chain(&e)))?;
        match pdu {
            Pdu::PData { data } => {
                for pdv in data {
                    match session.on_pdv(pdv) {
                        Ok(Some((pc_id, command))) => {
                            let reply = Pdu::PData {
                                data: vec![PDataValue {
                                    presentation_context_id: pc_id,
                                    value_type: PDataValueType::Command,
                                    is_last: true,
                                    data: command,
                                }],
                            };
                            association
                                .send(&reply)
                                .map_err(|e| format!("send failed: {}", error_chain(&e)))?;
                        }
                        Ok(None) => {}
                        Err(violation) => {
                            abort(association);
                            return Err(format!("protocol violation: {violation}"));
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => {
                if session.pending.is_some() {
                    warn!(calling_ae = %session.calling_ae, "DICOM: released during a transfer; partial object dropped");
                }
                association
                    .send(&Pdu::ReleaseRP)
                    .map_err(|e| format!("sending A-RELEASE-RP failed: {}", error_chain(&e)))?;
                let _ = association.inner_stream().shutdown(Shutdown::Both);
                info!(calling_ae = %session.calling_ae, "DICOM: association released");
                return Ok(());
            }
            Pdu::AbortRQ { source } => {
                return Err(format!("aborted by peer ({source:?})"));
            }
            other => {
                let what = other.short_description().to_string();
                abort(association);
                return Err(format!("unexpected PDU {what}"));
            }
        }
    }
}

/// Send A-ABORT and close the socket (best effort).
fn abort(association: &mut ServerAssociation<TcpStream>) {
    let _ = association.send(&Pdu::AbortRQ {
        source: dicom_ul::pdu::AbortRQSource::ServiceProvider(
            dicom_ul::pdu::AbortRQServiceProviderReason::ReasonNotSpecified,
        ),
    });
    let _ = association.inner_stream().shutdown(Shutdown::Both);
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// Per-association DIMSE state.
struct Session<'a> {
    shared: &'a Shared,
    calling_ae: String,
    contexts: Vec<PresentationContextNegotiated>,
    /// command set fragments collected so far
    cmd: Vec<u8>,
    cmd_pc: Option<u8>,
    /// a request whose data set is being received
    pending: Option<Pending>,
}

/// A request (normally C-STORE-RQ) whose data set is arriving.
struct Pending {
    pc_id: u8,
    rsp_field: u16,
    message_id: u16,
    sop_class: String,
    sop_instance: String,
    /// staging file being written; None when the data set is discarded
    file: Option<PartFile>,
    /// the failure to answer with, once the data set is complete
    failure: Option<(u16, String)>,
    data_bytes: u64,
}

/// A staging file being written; removed on drop unless committed.
struct PartFile {
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    header_len: u64,
}

impl PartFile {
    /// Flush, fsync and rename to `final_path`; on success the file is no
    /// longer ours to remove.
    fn commit(mut self, final_path: &Path) -> io::Result<()> {
        if let Some(out) = self.out.take() {
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
        }
        std::fs::rename(&self.tmp, final_path)?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        self.out.take();
        if !self.tmp.as_os_str().is_empty()
            && let Err(e) = std::fs::remove_file(&self.tmp)
            && e.kind() != io::ErrorKind::NotFound
        {
            warn!(path = %self.tmp.display(), error = %e, "DICOM: cannot remove staging file");
        }
    }
}

/// Outcome of one PDV: a response command to send on a presentation context.
type PdvOutcome = Result<Option<(u8, Vec<u8>)>, String>;

impl Session<'_> {
    fn on_pdv(&mut self, pdv: PDataValue) -> PdvOutcome {
        match pdv.value_type {
            PDataValueType::Command => self.on_command_fragment(pdv),
            PDataValueType::Data => self.on_data_fragment(pdv),
        }
    }

    fn context(&self, id: u8) -> Result<&PresentationContextNegotiated, String> {
        self.contexts
            .iter()
            .find(|pc| pc.id == id && pc.reason == PresentationContextResultReason::Acceptance)
            .ok_or_else(|| format!("presentation context {id} was not accepted"))
    }

    fn on_command_fragment(&mut self, pdv: PDataValue) -> PdvOutcome {
        if self.pending.is_some() {
            return Err("command received while a data set is pending".into());
        }
        match self.cmd_pc {
            Some(id) if id != pdv.presentation_context_id => {
                return Err("command fragments on different presentation contexts".into());
            }
            _ => self.cmd_pc = Some(pdv.presentation_context_id),
        }
        if self.cmd.len() + pdv.data.len() > MAX_COMMAND_BYTES {
            return Err("command set too large".into());
        }
        self.cmd.extend_from_slice(&pdv.data);
        if !pdv.is_last {
            return Ok(None);
        }
        let bytes = std::mem::take(&mut self.cmd);
        self.cmd_pc = None;
        let pc_id = pdv.presentation_context_id;
        let abstract_syntax = trim_uid(&self.context(pc_id)?.abstract_syntax).to_string();
        let transfer_syntax = trim_uid(&self.context(pc_id)?.transfer_syntax).to_string();
        let cmd = parse_command(&bytes)?;
        debug!(
            field = cmd.field,
            message_id = cmd.message_id,
            "DICOM: command received"
        );

        match cmd.field {
            C_ECHO_RQ => {
                if cmd.has_data_set {
                    return Err("C-ECHO-RQ with a data set".into());
                }
                let class = if cmd.sop_class.is_empty() {
                    abstract_syntax
                } else {
                    cmd.sop_class
                };
                debug!(calling_ae = %self.calling_ae, "DICOM: C-ECHO");
                let rsp =
                    build_response(0x8030, cmd.message_id, &class, None, STATUS_SUCCESS, None);
                Ok(Some((pc_id, rsp)))
            }
            C_STORE_RQ => {
                let mut pending = Pending {
                    pc_id,
                    rsp_field: 0x8001,
                    message_id: cmd.message_id,
                    sop_class: cmd.sop_class,
                    sop_instance: cmd.sop_instance,
                    file: None,
                    failure: None,
                    data_bytes: 0,
                };
                if !is_storage(&abstract_syntax) {
                    pending.failure = Some((
                        STATUS_SOP_CLASS_NOT_SUPPORTED,
                        "presentation context is not a storage SOP class".into(),
                    ));
                } else if !valid_uid(&pending.sop_class) || !valid_uid(&pending.sop_instance) {
                    pending.failure = Some((
                        STATUS_CANNOT_UNDERSTAND,
                        "missing or invalid Affected SOP Class/Instance UID".into(),
                    ));
                } else {
                    match self.create_staging_file(&pending, &transfer_syntax) {
                        Ok(file) => pending.file = Some(file),
                        Err(e) => {
                            warn!(error = %e, "DICOM: cannot create staging file");
                            pending.failure = Some((
                                STATUS_OUT_OF_RESOURCES,
                                "cannot create staging file".into(),
                            ));
                        }
                    }
                }
                if cmd.has_data_set {
                    self.pending = Some(pending);
                    Ok(None)
                } else {
                    // a C-STORE-RQ without a data set cannot be honoured
                    drop(pending.file.take());
                    let rsp = build_response(
                        pending.rsp_field,
                        pending.message_id,
                        &pending.sop_class,
                        Some(&pending.sop_instance),
                        STATUS_CANNOT_UNDERSTAND,
                        Some("C-STORE-RQ without a data set"),
                    );
                    Ok(Some((pc_id, rsp)))
                }
            }
            C_CANCEL_RQ => Ok(None), // nothing to cancel, and C-CANCEL has no response
            other => {
                warn!(field = %format!("{other:#06x}"), "DICOM: unsupported DIMSE command");
                let pending = Pending {
                    pc_id,
                    rsp_field: other | 0x8000,
                    message_id: cmd.message_id,
                    sop_class: cmd.sop_class,
                    sop_instance: cmd.sop_instance,
                    file: None,
                    failure: Some((STATUS_UNRECOGNIZED_OPERATION, "unsupported command".into())),
                    data_bytes: 0,
                };
                if cmd.has_data_set {
                    self.pending = Some(pending);
                    Ok(None)
                } else {
                    Ok(Some((pc_id, self.finish(pending))))
                }
            }
        }
    }

    fn on_data_fragment(&mut self, pdv: PDataValue) -> PdvOutcome {
        let max_bytes = self.shared.opts.max_bytes;
        let Some(pending) = self.pending.as_mut() else {
            return Err("data set fragment without a command".into());
        };
        if pending.pc_id != pdv.presentation_context_id {
            return Err("data set on another presentation context than its command".into());
        }
        let len = pdv.data.len() as u64;
        if pending.failure.is_none() {
            if pending.data_bytes.saturating_add(len) > max_bytes {
                pending.file = None; // stop writing, remove the file
                pending.failure = Some((
                    STATUS_OUT_OF_RESOURCES,
                    format!("object exceeds the limit of {max_bytes} bytes"),
                ));
            } else if let Some(out) = pending.file.as_mut().and_then(|f| f.out.as_mut())
                && let Err(e) = out.write_all(&pdv.data)
            {
                warn!(error = %e, "DICOM: writing staging file failed");
                pending.file = None;
                pending.failure =
                    Some((STATUS_OUT_OF_RESOURCES, "cannot write staging file".into()));
            }
        }
        pending.data_bytes = pending.data_bytes.saturating_add(len);
        if !pdv.is_last {
            return Ok(None);
        }
        let Some(pending) = self.pending.take() else {
            return Err("internal: pending request vanished".into());
        };
        let pc_id = pending.pc_id;
        Ok(Some((pc_id, self.finish(pending))))
    }

    /// Complete a request whose data set (if any) has fully arrived: commit
    /// the staging file, consult the sink and build the response.
    fn finish(&self, mut pending: Pending) -> Vec<u8> {
        let (status, comment) = match pending.failure.take() {
            Some((status, comment)) => {
                drop(pending.file.take());
                warn!(
                    calling_ae = %self.calling_ae,
                    status = %format!("{status:#06x}"),
                    %comment,
                    "DICOM: request refused"
                );
                (status, Some(comment))
            }
            None => match pending.file.take() {
                Some(file) => self.deliver(file, &pending),
                None => (
                    STATUS_CANNOT_UNDERSTAND,
                    Some("no data received".to_string()),
                ),
            },
        };
        build_response(
            pending.rsp_field,
            pending.message_id,
            &pending.sop_class,
            Some(&pending.sop_instance),
            status,
            comment.as_deref(),
        )
    }

    /// Commit the file and hand it to the sink.
    fn deliver(&self, file: PartFile, pending: &Pending) -> (u16, Option<String>) {
        let final_path = self
            .shared
            .opts
            .staging
            .join(format!("{}.dcm", random_id()));
        let bytes = file.header_len + pending.data_bytes;
        if let Err(e) = file.commit(&final_path) {
            warn!(error = %e, "DICOM: cannot finish staging file");
            return (STATUS_OUT_OF_RESOURCES, Some("cannot store object".into()));
        }
        let received = Received {
            path: final_path.clone(),
            calling_ae: self.calling_ae.clone(),
            bytes,
        };
        let sink = self.shared.sink.clone();
        let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink(received)))
            .unwrap_or_else(|_| Err("internal error while accepting the object".into()));
        match verdict {
            Ok(()) => {
                info!(
                    calling_ae = %self.calling_ae,
                    sop_class = %pending.sop_class,
                    bytes,
                    path = %final_path.display(),
                    "DICOM: object stored"
                );
                (STATUS_SUCCESS, None)
            }
            Err(reason) => {
                if let Err(e) = std::fs::remove_file(&final_path)
                    && e.kind() != io::ErrorKind::NotFound
                {
                    warn!(path = %final_path.display(), error = %e, "DICOM: cannot remove refused file");
                }
                // The sender's UIDs identify the patient's study: not logged.
                warn!(
                    calling_ae = %self.calling_ae,
                    %reason,
                    "DICOM: object refused"
                );
                (STATUS_CANNOT_UNDERSTAND, Some(reason))
            }
        }
    }

    /// Create the temporary staging file and write preamble, magic code and
    /// file meta group.
    fn create_staging_file(
        &self,
        pending: &Pending,
        transfer_syntax: &str,
    ) -> io::Result<PartFile> {
        let mut meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(pending.sop_class.as_str())
            .media_storage_sop_instance_uid(pending.sop_instance.as_str())
            .transfer_syntax(transfer_syntax)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name(IMPLEMENTATION_VERSION_NAME);
        if valid_ae(&self.calling_ae) {
            meta = meta.source_application_entity_title(self.calling_ae.as_str());
        }
        let meta = meta.build().map_err(io::Error::other)?;
        let mut head = Vec::with_capacity(512);
        head.extend_from_slice(&[0u8; 128]);
        head.extend_from_slice(b"DICM");
        meta.write(&mut head).map_err(io::Error::other)?;

        let tmp = self
            .shared
            .opts
            .staging
            .join(format!(".{}.part", random_id()));
        let file = File::create_new(&tmp)?;
        let mut part = PartFile {
            tmp,
            out: Some(BufWriter::with_capacity(256 * 1024, file)),
            header_len: head.len() as u64,
        };
        if let Some(out) = part.out.as_mut() {
            out.write_all(&head)?; // on error, `part` drops and removes the file
        }
        Ok(part)
    }
}

/// A UID we are willing to put into a file meta group.
fn valid_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.len() <= 64 && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

fn valid_ae(ae: &str) -> bool {
    !ae.is_empty() && ae.len() <= 16 && ae.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\')
}

mod dimse;
use dimse::{build_response, parse_command};

/// A random name for a staged file.
fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests;
