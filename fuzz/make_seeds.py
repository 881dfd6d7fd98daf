"""Writes the fuzz targets' seed corpora into fuzz/corpus/<target>/ (run by hand when
the seeds change; the files are committed). The DICOM seeds come from the tests'
fixture writer (pydicom, Debian's python3-pydicom): Usage: make_seeds.py"""
import base64, hashlib, hmac, json, os, shutil, struct, subprocess, sys, tempfile

here = os.path.dirname(os.path.abspath(__file__))
corpus = os.path.join(here, "corpus")


def put(target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def ws_frame(payload, opcode=1, mask=b"\x01\x02\x03\x04"):
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


# Signaling: a split byte, then the bytes of a connection or a message's text.
messages = [
    {"type": "join", "v": 1, "room": "or-1", "token": "eyJ.x.y", "name": "Dr. A"},
    {"type": "join", "v": 1, "room": "or-1", "token": "t", "receive_only": True},
    {"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"},
    {"type": "answer", "sdp": "v=0\r\n"},
    {"type": "mute", "kind": "video", "muted": True},
    {"type": "ping"},
    {"type": "leave"},
]
for i, m in enumerate(messages):
    text = json.dumps(m).encode()
    put("signaling", f"message-{i}", bytes([i * 37 % 256]) + text)
    put("signaling", f"frames-{i}", bytes([i * 11 + 3]) + ws_frame(text) + ws_frame(b"", opcode=9))
put("signaling", "huge-header", b"\x05" + b"\x81\xff" + struct.pack(">Q", 1 << 40) + b"\0\0\0\0" + b"a" * 64)

# SDP offers as encoders and browsers send them.
fingerprint = "sha-256 " + ":".join(["AB"] * 32)
chromium = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
    "a=extmap-allow-mixed\r\na=msid-semantic: WMS stream\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=ice-options:trickle\r\n"
    f"a=fingerprint:{fingerprint}\r\na=setup:actpass\r\na=mid:0\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=sendrecv\r\na=msid:stream audio\r\na=rtcp-mux\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=ssrc:1001 cname:x\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=ice-options:trickle\r\n"
    f"a=fingerprint:{fingerprint}\r\na=setup:actpass\r\na=mid:1\r\n"
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n"
    "a=sendrecv\r\na=msid:stream video\r\na=rtcp-mux\r\na=rtcp-rsize\r\n"
    "a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 ccm fir\r\n"
    "a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"
    "a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
    "a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n"
    "a=rid:h send\r\na=rid:l send\r\na=simulcast:send h;l\r\n"
    "a=ssrc-group:FID 2001 2002\r\na=ssrc:2001 cname:x\r\na=ssrc:2002 cname:x\r\n"
)
put("whip_sdp", "chromium-simulcast", chromium)
webrtcbin = (
    "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-options:trickle\r\na=group:BUNDLE video0 audio1\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=setup:actpass\r\na=ice-ufrag:x1y2\r\n"
    "a=ice-pwd:0123456789abcdefghijklmn\r\na=rtcp-mux\r\na=rtcp-rsize\r\na=sendonly\r\na=rtpmap:96 H264/90000\r\n"
    "a=rtcp-fb:96 nack pli\r\na=fmtp:96 packetization-mode=1;profile-level-id=42c01f\r\na=ssrc:3001 cname:gst\r\n"
    f"a=mid:video0\r\na=fingerprint:{fingerprint}\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 97\r\nc=IN IP4 0.0.0.0\r\na=setup:actpass\r\na=ice-ufrag:x1y2\r\n"
    "a=ice-pwd:0123456789abcdefghijklmn\r\na=rtcp-mux\r\na=sendonly\r\na=rtpmap:97 OPUS/48000/2\r\n"
    f"a=mid:audio1\r\na=fingerprint:{fingerprint}\r\na=candidate:1 1 UDP 2015363327 192.0.2.10 40000 typ host\r\n"
)
put("whip_sdp", "webrtcbin-h264", webrtcbin)
put("whip_sdp", "no-media", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n")
put("whip_sdp", "bad-port", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video nine UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n")

# Tokens: one the fuzz key signed, and shapes of wrong ones.
def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(claims, key=b"fuzz-secret-0123456789abcdef", alg="HS256"):
    signing = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    sig = hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(sig)


claims = {"room": "or-1", "role": "commentator", "name": "Dr. A", "iat": 0, "exp": 4102444800}
put("token", "valid", jwt(claims))
put("token", "invitation", jwt(dict(claims, jti="0123456789abcdef0123456789abcdef")))
put("token", "alg-none", jwt(claims, alg="none"))
put("token", "other-key", jwt(claims, key=b"another"))
put("token", "bearer", "Bearer " + jwt(claims))
put("token", "three-dots", "a.b.c.d")

# tus headers.
for i, h in enumerate(["1048576", "0", "9007199254740992", "kind ZGljb20=,batch YWJjZGVm", "filename ZHUubWU=, kind emlw", "1.0.0", "0.2.2", "-1"]):
    put("tus", f"header-{i}", h)

# Datagrams: STUN binding request, RTP, RTCP, a DTLS record.
def stun(username):
    attr = struct.pack(">HH", 6, len(username)) + username + b"\0" * (-len(username) % 4)
    attr += struct.pack(">HHI", 0x24, 4, 0x6E7F1EFF)
    return struct.pack(">HHI", 1, len(attr), 0x2112A442) + b"\x07" * 12 + attr


put("demux", "stun-binding", stun(b"srvufrag:peerufrag"))
put("demux", "rtp-vp8", bytes([0x80, 96]) + struct.pack(">HII", 1, 90000, 0xDEADBEEF) + b"\x90\xe0\x80\x01" + b"\x9d\x01\x2a" + b"\0" * 40)
put("demux", "rtcp-sr", bytes([0x80, 200]) + struct.pack(">HI", 6, 0xDEADBEEF) + b"\0" * 20)
put("demux", "dtls-client-hello", bytes([22, 0xFE, 0xFD]) + b"\0" * 8 + struct.pack(">H", 12) + bytes([1]) + b"\0" * 11)

# DICOM files as modalities write them (pydicom: the tests' fixtures).
tmp = tempfile.mkdtemp()
try:
    fixtures = os.path.join(here, "..", "tests", "fixtures", "make_dicom.py")
    for args in [[], ["jpegcine", "2"]]:
        subprocess.run(["/usr/bin/python3", fixtures, tmp] + args, check=True, capture_output=True)
    for name in sorted(os.listdir(tmp)):
        path = os.path.join(tmp, name)
        if os.path.getsize(path) <= 64 * 1024:
            put("dicom", name.replace("DOE_JOHN", "fixture"), open(path, "rb").read())
finally:
    shutil.rmtree(tmp)
# Files as archives send them (pydicom's own samples, MIT): no meta group, big
# endian, standard attributes stored as UN, implicit data under an explicit syntax.
samples = "/usr/lib/python3/dist-packages/pydicom/data/test_files"
for name in ["ExplVR_BigEndNoMeta.dcm", "UN_sequence.dcm", "no_meta_group_length.dcm",
             "rtdose_rle_1frame.dcm", "SC_rgb_jpeg.dcm", "rtstruct.dcm"]:
    path = os.path.join(samples, name)
    if os.path.exists(path):
        put("dicom", "pydicom_" + name, open(path, "rb").read())
print("seeds written to", corpus)
