#!/usr/bin/env python3
"""Encodes H.225.0 and H.245 messages with pycrate (an ASN.1 compiler and
PER codec independent of ours; pip install pycrate) for the unit tests in
proto/src/h323: messages full of what tandem-proto does not model (H.263,
gateway protocol lists, tokens, unknown body alternatives...), to show they
decode, and that what is modelled reads right.

Prints lines "NAME HEX" of Q.931 messages whose User-user element carries
the H323-UserInformation; pipe them to tshark_check.sh to see Wireshark
agree.

With `--check FILE` (lines "NAME HEX" as print_vectors writes them) it
decodes each of our messages, and each H.245 message and Fast Connect
proposal inside, with pycrate and encodes them again: the bytes must be
ours.
"""
import sys
from pycrate_asn1dir import H225, H245
from pycrate_asn1rt.codecs import ASN1CodecPER
from pycrate_asn1rt.asnobj_construct import _CONSTRUCT
from pycrate_asn1rt.utils import T_UINT

_to_per_orig = _CONSTRUCT._to_per


def _to_per_fixed(self):
    """pycrate 0.8.1 encodes a SEQUENCE's extension additions before it
    counts the bits of their bitmap, so each open type's padding is worked
    out from a wrong bit offset (a stray zero octet, or none). This writes
    the bitmap first. Everything else is pycrate's."""
    if self._ext is None or not any(k in self._ext or k[:5] == '_ext_' for k in self._val):
        return _to_per_orig(self)
    present = [i for i in range(len(self._ext_nest)) if not isinstance(self._ext_nest[i], list)
               and self._ext_nest[i] in self._val]
    if any(isinstance(i, list) for i in self._ext_nest) or any(k[:5] == '_ext_' for k in self._val):
        raise NotImplementedError('extension groups / unknown extensions')
    root_val = {k: v for k, v in self._val.items() if k not in self._ext}
    full_val = self._val
    # The root part as pycrate writes it, with the extension bit set.
    self._val = root_val
    GEN = _to_per_orig(self)
    self._val = full_val
    if GEN and GEN[0] == (T_UINT, 0, 1):
        GEN[0] = (T_UINT, 1, 1)
    ldet = max(len(self._ext_nest), max(present) + 1)
    assert ldet <= 64
    GEN.append((T_UINT, ldet - 1, 7))
    GEN.append((T_UINT, sum(1 << (ldet - 1 - i) for i in present), ldet))
    ASN1CodecPER._off[-1] += 7 + ldet
    if ASN1CodecPER._off[-1] % 8:
        GEN.extend(ASN1CodecPER.encode_pad())
    for i in present:
        ident = self._ext_nest[i]
        Comp = self._cont[ident]
        _par = Comp._parent
        Comp._parent = self
        Comp._val = self._val[ident]
        GEN.extend(ASN1CodecPER.encode_unconst_open(Comp))
        Comp._parent = _par
    return GEN


_CONSTRUCT._to_per = _to_per_fixed

UI = H225.H323_MESSAGES.H323_UserInformation
MSG = H245.MULTIMEDIA_SYSTEM_CONTROL.MultimediaSystemControlMessage
OLC = H245.MULTIMEDIA_SYSTEM_CONTROL.OpenLogicalChannel


def aper(t, v):
    t.set_val(v)
    return t.to_aper()


def q931(msg_type, uu):
    content = b'\x05' + uu
    return bytes([8, 2, 0x12, 0x34, msg_type, 0x7e]) + len(content).to_bytes(2, 'big') + content


PROTO = (0, 0, 8, 2250, 0, 6)
GUID = bytes(range(0x30, 0x40))
CALL = bytes(range(0x50, 0x60))
IP4 = ('unicastAddress', ('iPAddress', {'network': b'\xc0\x00\x02\x05', 'tsapIdentifier': 6000}))
NSP_H225 = {'nonStandardIdentifier': ('object', (1, 3, 6, 1, 4, 1, 99)), 'data': b'gw'}
NSP = {'nonStandardIdentifier': ('h221NonStandard', {'t35CountryCode': 181, 't35Extension': 0, 'manufacturerCode': 8888}),
       'data': b'vendor'}

h263 = ('h263VideoCapability', {'qcifMPI': 1, 'cifMPI': 2, 'maxBitRate': 3840, 'unrestrictedVector': False,
                                 'arithmeticCoding': False, 'advancedPrediction': True, 'pbFrames': False,
                                 'temporalSpatialTradeOffCapability': False, 'hrd-B': 5000,
                                 'errorCompensation': True})
h264 = ('genericVideoCapability', {'capabilityIdentifier': ('standard', (0, 0, 8, 241, 0, 0, 1)),
                                   'maxBitRate': 40000,
                                   'collapsing': [{'parameterIdentifier': ('standard', 41), 'parameterValue': ('booleanArray', 72)},
                                                  {'parameterIdentifier': ('standard', 42), 'parameterValue': ('unsignedMin', 85)},
                                                  {'parameterIdentifier': ('standard', 3), 'parameterValue': ('unsignedMin', 490)},
                                                  {'parameterIdentifier': ('standard', 4), 'parameterValue': ('unsignedMin', 32)}]})
content = ('extendedVideoCapability', {
    'videoCapability': [h264, h263],
    'videoCapabilityExtension': [{'capabilityIdentifier': ('standard', (0, 0, 8, 239, 1, 2)),
                                  'collapsing': [{'parameterIdentifier': ('standard', 1), 'parameterValue': ('booleanArray', 1)}]}]})

tcs = ('request', ('terminalCapabilitySet', {
    'sequenceNumber': 7,
    'protocolIdentifier': (0, 0, 8, 245, 0, 10),
    'multiplexCapability': ('h2250Capability', {
        'maximumAudioDelayJitter': 250,
        'receiveMultipointCapability': {'multicastCapability': False, 'multiUniCastConference': False,
                                        'mediaDistributionCapability': [{'centralizedControl': True, 'distributedControl': False,
                                                                         'centralizedAudio': True, 'distributedAudio': False,
                                                                         'centralizedVideo': True, 'distributedVideo': False}]},
        'transmitMultipointCapability': {'multicastCapability': False, 'multiUniCastConference': False, 'mediaDistributionCapability': []},
        'receiveAndTransmitMultipointCapability': {'multicastCapability': False, 'multiUniCastConference': False, 'mediaDistributionCapability': []},
        'mcCapability': {'centralizedConferenceMC': False, 'decentralizedConferenceMC': False},
        'rtcpVideoControlCapability': True,
        'mediaPacketizationCapability': {'h261aVideoPacketization': False,
                                         'rtpPayloadType': [{'payloadDescriptor': ('rfc-number', 3984), 'payloadType': 96}]},
        'logicalChannelSwitchingCapability': False,
        't120DynamicPortCapability': False}),
    'capabilityTable': [
        {'capabilityTableEntryNumber': 1, 'capability': ('receiveAudioCapability', ('g722-64k', 60))},
        {'capabilityTableEntryNumber': 2, 'capability': ('receiveAudioCapability', ('g7231', {'maxAl-sduAudioFrames': 8, 'silenceSuppression': False}))},
        {'capabilityTableEntryNumber': 3, 'capability': ('receiveAudioCapability', ('genericAudioCapability', {
            'capabilityIdentifier': ('standard', (0, 0, 7, 7221, 1, 0)), 'maxBitRate': 320,
            'collapsing': [{'parameterIdentifier': ('standard', 1), 'parameterValue': ('booleanArray', 16)}]}))},
        {'capabilityTableEntryNumber': 4, 'capability': ('receiveVideoCapability', h263)},
        {'capabilityTableEntryNumber': 5, 'capability': ('receiveVideoCapability', h264)},
        {'capabilityTableEntryNumber': 6, 'capability': ('receiveVideoCapability', content)},
        {'capabilityTableEntryNumber': 7, 'capability': ('genericControlCapability', {'capabilityIdentifier': ('standard', (0, 0, 8, 239, 1, 1))})},
        {'capabilityTableEntryNumber': 8, 'capability': ('conferenceCapability', {'chairControlCapability': False, 'videoIndicateMixingCapability': False})},
        {'capabilityTableEntryNumber': 9, 'capability': ('nonStandard', NSP)},
        {'capabilityTableEntryNumber': 10, 'capability': ('receiveDataApplicationCapability', {
            'application': ('h224', ('hdlcFrameTunnelling', 0)), 'maxBitRate': 48})},
        {'capabilityTableEntryNumber': 11},
    ],
    'capabilityDescriptors': [{'capabilityDescriptorNumber': 0, 'simultaneousCapabilities': [[1, 2, 3], [4, 5], [6]]},
                              {'capabilityDescriptorNumber': 1}],
    'genericInformation': [{'messageIdentifier': ('standard', (0, 0, 8, 460, 9))}],
}))

olc_h263 = ('request', ('openLogicalChannel', {
    'forwardLogicalChannelNumber': 32,
    'forwardLogicalChannelParameters': {
        'dataType': ('videoData', h263),
        'multiplexParameters': ('h2250LogicalChannelParameters', {
            'nonStandard': [NSP], 'sessionID': 2, 'associatedSessionID': 1,
            'mediaControlChannel': IP4, 'silenceSuppression': False,
            'destination': {'mcuNumber': 1, 'terminalNumber': 2},
            'dynamicRTPPayloadType': 100,
            'mediaPacketization': ('rtpPayloadType', {'payloadDescriptor': ('rfc-number', 2429), 'payloadType': 100}),
            'source': {'mcuNumber': 0, 'terminalNumber': 3}}),
        'forwardLogicalChannelDependency': 31},
    'genericInformation': [{'messageIdentifier': ('standard', (0, 0, 8, 460, 18))}],
}))

olc_ack = ('response', ('openLogicalChannelAck', {
    'forwardLogicalChannelNumber': 32,
    'forwardMultiplexAckParameters': ('h2250LogicalChannelAckParameters', {
        'nonStandard': [NSP], 'sessionID': 2,
        'mediaChannel': IP4, 'mediaControlChannel': ('unicastAddress', ('iP6Address', {'network': bytes(range(16)), 'tsapIdentifier': 6001})),
        'flowControlToZero': True, 'portNumber': 9}),
}))

h245 = [
    tcs,
    olc_h263,
    olc_ack,
    ('request', ('requestMode', {'sequenceNumber': 3, 'requestedModes': [[{'type': ('videoMode', ('h261VideoMode', {
        'resolution': ('cif', 0), 'bitRate': 3000, 'stillImageTransmission': False}))}]]})),
    ('request', ('conferenceRequest', ('makeMeChair', 0))),
    ('request', ('closeLogicalChannel', {'forwardLogicalChannelNumber': 32, 'source': ('lcse', 0), 'reason': ('reopen', 0)})),
    ('indication', ('functionNotUnderstood', ('request', ('maintenanceLoopRequest', {'type': ('systemLoop', 0)})))),
    ('indication', ('userInput', ('signal', {'signalType': '7', 'duration': 250,
                                              'rtp': {'timestamp': 123456, 'logicalChannelNumber': 1},
                                              'rtpPayloadIndication': 0}))),
    ('indication', ('userInput', ('extendedAlphanumeric', {'alphanumeric': '123'}))),
    ('indication', ('mcLocationIndication', {'signalAddress': IP4})),
    ('command', ('miscellaneousCommand', {'logicalChannelNumber': 32, 'type': ('videoFastUpdateGOB', {'firstGOB': 0, 'numberOfGOBs': 18})})),
    ('command', ('miscellaneousCommand', {'logicalChannelNumber': 32, 'type': ('lostPicture', [('pictureNumber', 1)])})),
    ('command', ('flowControlCommand', {'scope': ('wholeMultiplex', 0), 'restriction': ('noRestriction', 0)})),
    ('command', ('endSessionCommand', ('gstnOptions', ('v34H324', 0)))),
    ('command', ('sendTerminalCapabilitySet', ('genericRequest', 0))),
    ('response', ('masterSlaveDeterminationReject', {'cause': ('identicalNumbers', 0)})),
]

setup = {
    'h323-uu-pdu': {
        'h323-message-body': ('setup', {
            'protocolIdentifier': PROTO,
            'h245Address': ('ip6Address', {'ip': bytes(range(16)), 'port': 1721}),
            'sourceAddress': [('h323-ID', 'Salle \u00e9t\u00e9'), ('url-ID', 'h323:room@example.org'),
                              ('email-ID', 'room@example.org'),
                              ('partyNumber', ('e164Number', {'publicTypeOfNumber': ('internationalNumber', 0), 'publicNumberDigits': '4930123'}))],
            'sourceInfo': {
                'nonStandardData': {'nonStandardIdentifier': ('object', (1, 3, 6, 1, 4, 1, 99)), 'data': b'x'},
                'vendor': {'vendor': {'t35CountryCode': 181, 't35Extension': 0, 'manufacturerCode': 8888},
                           'productId': b'Room', 'versionId': b'1.0', 'enterpriseNumber': (1, 3, 6, 1, 4, 1, 99)},
                'gateway': {'protocol': [('voice', {'supportedPrefixes': [{'prefix': ('dialledDigits', '9')}]}),
                                         ('h323', {'nonStandardData': NSP_H225,
                                                   'dataRatesSupported': [{'channelRate': 7680}],
                                                   'supportedPrefixes': []})]},
                'terminal': {},
                'set': (5, 32),
                'mc': False, 'undefinedNode': False,
            },
            'destinationAddress': [('dialledDigits', '4711#*,0'), ('transportID', ('ipAddress', {'ip': b'\xc6\x33\x64\x07', 'port': 1720}))],
            'destCallSignalAddress': ('ipSourceRoute', {'ip': b'\x0a\x00\x00\x02', 'port': 1720, 'route': [b'\x0a\x00\x00\x03'], 'routing': ('loose', 0)}),
            'destExtraCallInfo': [('h323-ID', 'extra')],
            'destExtraCRV': [1, 65535],
            'activeMC': True,
            'conferenceID': GUID,
            'conferenceGoal': ('join', 0),
            'callServices': {'q932Full': True, 'q951Full': False, 'q952Full': False, 'q953Full': False,
                             'q955Full': False, 'q956Full': False, 'q957Full': False,
                             'q954Info': {'conferenceCalling': False, 'threePartyService': False}},
            'callType': ('nToN', 0),
            'sourceCallSignalAddress': ('ipAddress', {'ip': b'\xc0\x00\x02\x05', 'port': 1720}),
            'remoteExtensionAddress': ('h323-ID', 'ext'),
            'callIdentifier': {'guid': CALL},
            'h245SecurityCapability': [('noSecurity', 0)],
            'fastStart': [aper(OLC, olc_h263[1][1])],
            'mediaWaitForConnect': True,
            'canOverlapSend': True,
            'endpointIdentifier': 'EP1',
            'multipleCalls': True,
            'maintainConnection': True,
            'connectionParameters': {'connectionType': ('bChannel', 0), 'numberOfScnConnections': 2, 'connectionAggregation': ('auto', 0)},
            'language': ['fr'],
            'presentationIndicator': ('presentationAllowed', 0),
            'screeningIndicator': 'networkProvided',
            'symmetricOperationRequired': 0,
            'supportedFeatures': [{'id': ('standard', 18), 'parameters': [{'id': ('standard', 1), 'content': ('number8', 3)}]}],
            'hopCount': 31,
            'displayName': [{'name': 'Salle 4'}],
        }),
        'nonStandardData': {'nonStandardIdentifier': ('object', (1, 3, 6, 1, 4, 1, 99)), 'data': b'pdu'},
        'nonStandardControl': [NSP_H225],
        'callLinkage': {'globalCallId': CALL},
        'h245Tunnelling': True,
        'h245Control': [aper(MSG, m) for m in h245],
        'provisionalRespToH245Tunnelling': 0,
        'genericData': [{'id': ('standard', 19)}],
    },
    'user-data': {'protocol-discriminator': 5, 'user-information': b'hello'},
}

vectors = [('pycrate_setup', 5, setup)]
vectors.append(('pycrate_status', 0x7d, {'h323-uu-pdu': {
    'h323-message-body': ('status', {'protocolIdentifier': PROTO, 'callIdentifier': {'guid': CALL}}),
    'h245Tunnelling': False}}))
vectors.append(('pycrate_release', 0x5a, {'h323-uu-pdu': {
    'h323-message-body': ('releaseComplete', {'protocolIdentifier': PROTO,
                                              'reason': ('replaceWithConferenceInvite', GUID),
                                              'callIdentifier': {'guid': CALL},
                                              'busyAddress': [('h323-ID', 'busy')]}),
    'h245Tunnelling': False}}))
vectors.append(('pycrate_facility', 0x62, {'h323-uu-pdu': {
    'h323-message-body': ('facility', {'protocolIdentifier': PROTO,
                                       'alternativeAliasAddress': [('dialledDigits', '100')],
                                       'conferenceID': GUID,
                                       'reason': ('forwardedElements', 0),
                                       'callIdentifier': {'guid': CALL},
                                       'h245Address': ('ipAddress', {'ip': b'\xc0\x00\x02\x05', 'port': 30001}),
                                       'multipleCalls': False, 'maintainConnection': True,
                                       'fastConnectRefused': 0}),
    'h245Tunnelling': True}}))



def user_user(msg):
    """The PER bytes of a Q.931 message's User-user element."""
    i = 5
    while i < len(msg):
        ie = msg[i]
        if ie & 0x80:
            i += 1
        elif ie == 0x7e:
            n = int.from_bytes(msg[i + 1:i + 3], 'big')
            return msg[i + 4:i + 3 + n]
        else:
            i += 2 + msg[i + 1]
    raise ValueError('no User-user element')


def same(name, t, b):
    t.from_aper(b)
    again = t.to_aper()
    if again != b:
        print('DIFF %s\n  ours    %s\n  pycrate %s' % (name, b.hex(), again.hex()))
        return False, t.get_val()
    print('same', name)
    return True, t.get_val()


def check(path):
    ok = True
    for line in open(path):
        if not line.strip():
            continue
        name, hx = line.split()
        good, v = same(name, UI, user_user(bytes.fromhex(hx)))
        ok &= good
        pdu = v['h323-uu-pdu']
        kind, body = pdu['h323-message-body']
        inner = list(pdu.get('h245Control', []))
        if kind == 'setup':
            inner += list(body.get('parallelH245Control', []))
        for j, m in enumerate(inner):
            ok &= same('%s/h245[%d]' % (name, j), MSG, m)[0]
        if isinstance(body, dict):
            for j, m in enumerate(body.get('fastStart', [])):
                ok &= same('%s/fastStart[%d]' % (name, j), OLC, m)[0]
    return ok


if __name__ == '__main__':
    if sys.argv[1:2] == ['--check']:
        sys.exit(0 if check(sys.argv[2]) else 1)
    for name, mt, v in vectors:
        print(name, q931(mt, aper(UI, v)).hex())
