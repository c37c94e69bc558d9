# Recipe ids, chunking and reassembly; profile hash; version checks at the handshake.

import hashlib
import struct

from isoproto import PROTOCOL_MAJOR, PROTOCOL_MINOR, catalog, codec, codes
from isoproto.errors import DecodeError
from isoproto.recipe import (
    SEGMENTS_PER_CHUNK,
    RecipeAssembler,
    profile_hash,
    recipe_bytes,
    recipe_chunks,
    recipe_id,
)
from isoproto.version import board_version_problem, hello_problem, host_version_problem, peer_version

_TYPICAL = [
    (codes.SEG_RAMP, 250.0, 1.0, 0.0),
    (codes.SEG_HOLD, 0.0, 0.0, 300.0),
    (codes.SEG_RAMP, 0.0, 0.5, 0.0),
]


def _long(n):
    return [
        (codes.SEG_RAMP, 10.0 * (i + 1), 1.0, 0.0) if i % 2 == 0 else (codes.SEG_HOLD, 0.0, 0.0, 60.0)
        for i in range(n)
    ]


def test_recipe_id_is_the_sha256_prefix_of_the_canonical_bytes():
    raw = recipe_bytes(_TYPICAL)
    assert len(raw) == 13 * 3
    assert raw[:13] == struct.pack("<Bfff", codes.SEG_RAMP, 250.0, 1.0, 0.0)
    digest = hashlib.sha256(raw).digest()
    assert recipe_id(_TYPICAL) == (digest[0] << 24) | (digest[1] << 16) | (digest[2] << 8) | digest[3]
    assert recipe_id(_TYPICAL) == 0xDAB1CAA1  # frozen: the golden LOAD_RECIPE_CHUNK and START use it
    # f32 rounding is part of the id: 0.1 and its f32 neighbour give the same id
    assert recipe_id([(1, 0.1, 1.0, 0.0)]) == recipe_id(
        [(1, struct.unpack("<f", struct.pack("<f", 0.1))[0], 1.0, 0.0)]
    )
    assert recipe_id([(1, 250.0, 1.0, 0.0)]) != recipe_id([(1, 250.0, 1.5, 0.0)])


def test_a_20_segment_recipe_needs_two_chunks_that_fit_a_frame():
    assert SEGMENTS_PER_CHUNK == 18
    chunks = recipe_chunks(_long(20))
    assert [(c[1], c[2], len(c[3])) for c in chunks] == [(20, 0, 18), (20, 18, 2)]
    for c in chunks:
        assert len(codec.encode(catalog.LOAD_RECIPE_CHUNK, (65535,) + c)) <= 250
    assert len(recipe_chunks(_long(18))) == 1


def test_assembler_rebuilds_the_recipe_and_checks_its_id():
    a = RecipeAssembler(max_segments=40)
    chunks = recipe_chunks(_long(20))
    assert a.add(*chunks[0]) == codes.R_NONE and not a.complete
    assert a.add(*chunks[1]) == codes.R_NONE and a.complete
    assert a.segments == _long(20) and a.recipe_id == chunks[0][0]


def test_assembler_refuses_bad_chunks_with_reasons():
    chunks = recipe_chunks(_long(20))
    a = RecipeAssembler(max_segments=40)
    assert a.add(*chunks[1]) == codes.R_RECIPE_INCOMPLETE  # the first chunk never came
    a.add(*chunks[0])
    assert a.add(chunks[1][0], 20, 17, chunks[1][3]) == codes.R_CHUNK_OUT_OF_RANGE
    a.add(*chunks[0])
    assert a.add(chunks[1][0], 20, 18, chunks[1][3] + [(1, 1.0, 1.0, 0.0)]) == codes.R_CHUNK_OUT_OF_RANGE
    a.add(*chunks[0])
    tampered = [(codes.SEG_RAMP, 999.0, 1.0, 0.0)] + chunks[1][3][1:]
    assert a.add(chunks[1][0], 20, 18, tampered) == codes.R_RECIPE_HASH and not a.complete
    assert a.add(1, 0, 0, []) == codes.R_EMPTY_RECIPE
    assert RecipeAssembler(max_segments=10).add(*chunks[0]) == codes.R_TOO_MANY_SEGMENTS


def test_profile_hash_covers_every_profile_field():
    profile = (400.0, 420.0, 2.0, 1.0, 3600.0, 10.0, 5000, codes.HOST_LOST_DEPRESSURISE)
    assert profile_hash(profile) == 0x14B2C046  # frozen: the golden HELLO uses it
    body = codec.encode(catalog.PROFILE, profile)[1:]
    digest = hashlib.sha256(body).digest()
    assert profile_hash(profile) == (digest[0] << 24) | (digest[1] << 16) | (digest[2] << 8) | digest[3]
    for i in range(len(profile)):
        changed = list(profile)
        changed[i] = changed[i] + 1
        assert profile_hash(changed) != profile_hash(profile)


def test_major_mismatch_is_refused_naming_both_versions_and_what_to_reflash():
    assert board_version_problem(PROTOCOL_MAJOR, PROTOCOL_MINOR + 3) == ""  # minors are compatible
    older = board_version_problem(PROTOCOL_MAJOR - 1, 4, "0.9.2")
    assert "protocol %d.4" % (PROTOCOL_MAJOR - 1) in older and "0.9.2" in older
    assert "%d.%d" % (PROTOCOL_MAJOR, PROTOCOL_MINOR) in older and "reflash the board" in older
    newer = board_version_problem(PROTOCOL_MAJOR + 1, 0)
    assert "protocol %d.0" % (PROTOCOL_MAJOR + 1) in newer and "upgrade the isopress host" in newer
    assert host_version_problem(PROTOCOL_MAJOR, 9) == ""
    assert "%d.0" % (PROTOCOL_MAJOR + 1) in host_version_problem(PROTOCOL_MAJOR + 1, 0)


def test_peer_version_reads_any_major_hello():
    hello = codec.encode(catalog.HELLO, (1, 0, "fw", "id", "sim", 0, "", "", 0, 0, 0, 0, 100, 0, 0))
    assert peer_version(hello) == (1, 0)
    future = b"\x11\x02\x05" + b"\xff" * 40  # a 2.5 HELLO whose layout we cannot know
    assert peer_version(future) == (2, 5)
    try:
        peer_version(b"\x20\x01\x00")
    except DecodeError:
        return
    raise AssertionError("TELEMETRY read as HELLO")


def test_hello_problem_names_the_firmware_of_a_board_of_another_major():
    ok = codec.encode(
        catalog.HELLO, (PROTOCOL_MAJOR, 7, "1.9.0", "id", "sim", 0, "", "", 0, 0, 0, 0, 100, 0, 0)
    )
    assert hello_problem(ok) == ""  # another minor: compatible
    future = bytes((catalog.HELLO, PROTOCOL_MAJOR + 1, 3, 5)) + b"3.0.1" + b"\xee" * 30
    msg = hello_problem(future)
    assert "protocol %d.3 (firmware 3.0.1)" % (PROTOCOL_MAJOR + 1) in msg
    assert "this host speaks %d.%d" % (PROTOCOL_MAJOR, PROTOCOL_MINOR) in msg
    garbled = bytes((catalog.HELLO, PROTOCOL_MAJOR + 1, 0, 2, 0xFF, 0xFE))
    assert "(firmware" not in hello_problem(garbled) and "refused" in hello_problem(garbled)
