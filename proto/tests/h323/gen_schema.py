#!/usr/bin/env python3
"""Writes proto/src/h323/schema.rs: the ASN.1 shapes (root components only)
of the H.225.0 and H.245 types that tandem-proto carries without modelling
them, so that aligned-PER decoding can step over them and re-encode them.

The shapes come from pycrate's compiled modules (pip install pycrate), which
were compiled from the ITU-T ASN.1 modules H323-MESSAGES (H.225.0 v7) and
MULTIMEDIA-SYSTEM-CONTROL (H.245). Run from the repository root:

    python3 proto/tests/h323/gen_schema.py > proto/src/h323/schema.rs
    rustfmt --edition 2024 proto/src/h323/schema.rs

Extension additions and extension alternatives are not described: PER wraps
them in open types, which the decoder skips (or keeps) by their length.
"""
import math
import re
import sys

from pycrate_asn1dir import H225, H245

# (rust static, module, type, dotted path into the type or '')
ENTRIES = [
    ('H225_NON_STANDARD_PARAMETER', 'H225', 'NonStandardParameter', ''),
    ('H225_GATEKEEPER_INFO', 'H225', 'GatekeeperInfo', ''),
    ('H225_GATEWAY_INFO', 'H225', 'GatewayInfo', ''),
    ('H225_MCU_INFO', 'H225', 'McuInfo', ''),
    ('H225_TERMINAL_INFO', 'H225', 'TerminalInfo', ''),
    ('H225_TRANSPORT_ADDRESS', 'H225', 'TransportAddress', ''),
    ('H225_QSERIES_OPTIONS', 'H225', 'QseriesOptions', ''),
    ('H225_USER_DATA', 'H225', 'H323-UserInformation', 'user-data'),
    ('H225_DEST_EXTRA_CRV', 'H225', 'Setup-UUIE', 'destExtraCRV'),
    ('H245_NON_STANDARD_PARAMETER', 'H245', 'NonStandardParameter', ''),
    ('H245_CAPABILITY', 'H245', 'Capability', ''),
    ('H245_VIDEO_CAPABILITY', 'H245', 'VideoCapability', ''),
    ('H245_AUDIO_CAPABILITY', 'H245', 'AudioCapability', ''),
    ('H245_DATA_APPLICATION_CAPABILITY', 'H245', 'DataApplicationCapability', ''),
    ('H245_DATA_PROTOCOL_CAPABILITY', 'H245', 'DataProtocolCapability', ''),
    ('H245_USER_INPUT_CAPABILITY', 'H245', 'UserInputCapability', ''),
    ('H245_DATA_TYPE', 'H245', 'DataType', ''),
    ('H245_MULTIPLEX_CAPABILITY', 'H245', 'MultiplexCapability', ''),
    ('H245_OLC_FORWARD_MULTIPLEX', 'H245', 'OpenLogicalChannel',
     'forwardLogicalChannelParameters.multiplexParameters'),
    ('H245_OLC_REVERSE_MULTIPLEX', 'H245', 'OpenLogicalChannel',
     'reverseLogicalChannelParameters.multiplexParameters'),
    ('H245_OLC_ACK_REVERSE_MULTIPLEX', 'H245', 'OpenLogicalChannelAck',
     'reverseLogicalChannelParameters.multiplexParameters'),
    ('H245_UNICAST_ADDRESS', 'H245', 'UnicastAddress', ''),
    ('H245_MULTICAST_ADDRESS', 'H245', 'MulticastAddress', ''),
    ('H245_END_SESSION_COMMAND', 'H245', 'EndSessionCommand', ''),
    ('H245_MISCELLANEOUS_COMMAND_TYPE', 'H245', 'MiscellaneousCommand', 'type'),
    ('H245_USER_INPUT_INDICATION', 'H245', 'UserInputIndication', ''),
]

MODS = {'H225': H225.H323_MESSAGES, 'H245': H245.MULTIMEDIA_SYSTEM_CONTROL}
PREFIX = {
    'H323-MESSAGES': 'H225',
    'MULTIMEDIA-SYSTEM-CONTROL': 'H245',
    'H235-SECURITY-MESSAGES': 'H235',
}

named = {}     # static name -> rust expression
order = []     # emission order


def snake(name):
    s = re.sub(r'[-.]', '_', name)
    s = re.sub(r'([a-z0-9])([A-Z])', r'\1_\2', s)
    s = re.sub(r'([A-Z]+)([A-Z][a-z])', r'\1_\2', s)
    return s.upper()


def size(o):
    c = getattr(o, '_const_sz', None)
    if not c:
        return 'Size::UNBOUNDED'
    if c.root and len(c.root) == 1 and hasattr(c.root[0], 'lb'):
        r = c.root[0]
        ub = 'None' if r.ub is None else 'Some(%d)' % r.ub
        return 'Size { lb: %d, ub: %s, ext: %s }' % (r.lb, ub, 'true' if c.ext is not None else 'false')
    if c.lb is not None:
        ub = 'None' if c.ub is None else 'Some(%d)' % c.ub
        return 'Size { lb: %d, ub: %s, ext: %s }' % (c.lb, ub, 'true' if c.ext is not None else 'false')
    raise SystemExit('unsupported size constraint %r' % (c,))


def char_bits(o):
    t = o.TYPE
    alpha = getattr(o, '_const_alpha', None)
    if alpha and alpha.root:
        n = len(alpha.root)
    else:
        n = {'IA5String': 128, 'PrintableString': 74, 'NumericString': 11,
             'VisibleString': 95, 'BMPString': 65536, 'UniversalString': 2 ** 32}[t]
    b = max(1, math.ceil(math.log2(n))) if n > 1 else 0
    for a in (1, 2, 4, 8, 16, 32):  # ALIGNED: rounded up to a power of two
        if b <= a:
            return a
    raise SystemExit('alphabet too large')


def typeref(o):
    if o._typeref is not None:
        try:
            mod, name = o._typeref.called
            return PREFIX[mod] + '_' + snake(name), (mod, name)
        except Exception:
            return None, None
    return None, None


def node(o):
    """A Rust expression for `o` (a &'static Node)."""
    t = o.TYPE
    if t in ('SEQUENCE', 'SET', 'CHOICE'):
        ref, called = typeref(o)
        if ref:
            if ref not in named:
                named[ref] = None  # break cycles
                named[ref] = construct(o)
                order.append(ref)
            return '&' + ref
        return '&' + construct(o)
    return '&' + construct(o)


def construct(o):
    t = o.TYPE
    if t == 'NULL':
        return 'Node::Null'
    if t == 'BOOLEAN':
        return 'Node::Boolean'
    if t == 'INTEGER':
        c = getattr(o, '_const_val', None)
        if not c:
            return 'Node::Integer { lb: None, ub: None, ext: false }'
        lb = 'None' if c.lb is None else 'Some(%d)' % c.lb
        ub = 'None' if c.ub is None else 'Some(%d)' % c.ub
        return 'Node::Integer { lb: %s, ub: %s, ext: %s }' % (lb, ub, 'true' if c.ext is not None else 'false')
    if t == 'ENUMERATED':
        return 'Node::Enumerated { root: %d, ext: %s }' % (len(o._root), 'true' if o._ext is not None else 'false')
    if t == 'OCTET STRING':
        return 'Node::OctetString(%s)' % size(o)
    if t == 'BIT STRING':
        return 'Node::BitString(%s)' % size(o)
    if t == 'OBJECT IDENTIFIER':
        return 'Node::ObjectIdentifier'
    if t in ('IA5String', 'PrintableString', 'NumericString', 'VisibleString', 'BMPString'):
        return 'Node::String { size: %s, bits: %d }' % (size(o), char_bits(o))
    if t in ('GeneralString', 'UTF8String', 'GraphicString', 'TeletexString', 'VideotexString'):
        return 'Node::OctetString(Size::UNBOUNDED)'
    if t in ('SEQUENCE', 'SET'):
        ext = o._ext
        fields = []
        for k, v in o._cont.items():
            if ext is not None and k in ext:
                continue
            opt = k in (o._root_opt or []) or getattr(v, '_def', None) is not None
            fields.append('Field { optional: %s, node: %s }' % ('true' if opt else 'false', node(v)))
        return 'Node::Sequence { ext: %s, fields: &[%s] }' % ('true' if ext is not None else 'false', ', '.join(fields))
    if t == 'CHOICE':
        ext = o._ext
        alts = [node(v) for k, v in o._cont.items() if not (ext is not None and k in ext)]
        return 'Node::Choice { ext: %s, root: &[%s] }' % ('true' if ext is not None else 'false', ', '.join(alts))
    if t in ('SEQUENCE OF', 'SET OF'):
        return 'Node::SequenceOf { size: %s, of: %s }' % (size(o), node(o._cont))
    raise SystemExit('unsupported type %s' % t)


def resolve(mod, tname, path):
    o = getattr(MODS[mod], tname.replace('-', '_'))
    for p in [p for p in path.split('.') if p]:
        o = o._cont[p]
    return o


entries = []
for rust, mod, tname, path in ENTRIES:
    o = resolve(mod, tname, path)
    ref, _ = typeref(o)
    if not path and o.TYPE in ('SEQUENCE', 'SET', 'CHOICE'):
        key = mod + '_' + snake(tname)
        if key not in named:
            named[key] = None
            named[key] = construct(o)
            order.append(key)
        if key != rust:
            entries.append((rust, '&' + key))
    else:
        entries.append((rust, None, construct(o)))

out = sys.stdout
out.write('//! Generated by `proto/tests/h323/gen_schema.py` from the ITU-T ASN.1\n')
out.write('//! modules H323-MESSAGES (H.225.0) and MULTIMEDIA-SYSTEM-CONTROL (H.245),\n')
out.write('//! as compiled by pycrate: the root components of the types that\n')
out.write('//! [`super::opaque`] steps over or keeps without modelling. Do not edit.\n')
out.write('#![allow(dead_code)]\n\n')
out.write('use super::opaque::{Field, Node};\nuse super::per::Size;\n\n')
for e in entries:
    if len(e) == 3:
        out.write('pub(crate) static %s: Node = %s;\n\n' % (e[0], e[2]))
    else:
        out.write('pub(crate) static %s: &Node = %s;\n\n' % (e[0], e[1]))
for name in order:
    out.write('pub(crate) static %s: Node = %s;\n\n' % (name, named[name]))
