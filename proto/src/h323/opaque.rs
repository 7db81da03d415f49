//! Values of ASN.1 types that H.323-lite carries without modelling them
//! (a peer's H.261 capability, a gateway's protocol list, a nonStandard
//! parameter): decoded by their shape in [`super::schema`] into an
//! [`Opaque`] that encodes back to the same bits.
//!
//! PER has no lengths around root components, so stepping over one means
//! decoding it; keeping the decoded value is what lets a decoded message be
//! written back. Extension additions and extension alternatives need no
//! shape: they are open types, kept as their octets.

use super::per::{Alt, Reader, Result, Size, Writer};

/// The shape of an ASN.1 type as aligned PER sees it (root components only).
/// The generator emits whichever variants the modules need; not all are in
/// today's tables.
#[derive(Debug)]
#[allow(dead_code)]
pub(crate) enum Node {
    Null,
    Boolean,
    Integer {
        lb: Option<i64>,
        ub: Option<i64>,
        ext: bool,
    },
    Enumerated {
        root: u16,
        ext: bool,
    },
    OctetString(Size),
    BitString(Size),
    ObjectIdentifier,
    /// A known-multiplier character string, `bits` a character.
    String {
        size: Size,
        bits: u8,
    },
    Sequence {
        ext: bool,
        fields: &'static [Field],
    },
    Choice {
        ext: bool,
        root: &'static [&'static Node],
    },
    SequenceOf {
        size: Size,
        of: &'static Node,
    },
}

/// A root component of a SEQUENCE.
#[derive(Debug)]
pub(crate) struct Field {
    /// OPTIONAL or DEFAULT: it has a presence bit.
    pub optional: bool,
    pub node: &'static Node,
}

impl Node {
    /// The `i`th root alternative of a CHOICE.
    pub(crate) fn alt(&self, i: usize) -> Option<&'static Node> {
        match self {
            Node::Choice { root, .. } => root.get(i).copied(),
            _ => None,
        }
    }

    fn root_alts(&self) -> (usize, bool) {
        match self {
            Node::Choice { root, ext } => (root.len(), *ext),
            _ => (0, false),
        }
    }
}

/// Writes the smallest value of `node` (every OPTIONAL component left
/// out, lower bounds, first alternatives): how a presence-only component
/// such as an empty `TerminalInfo` is sent.
pub(crate) fn encode_smallest(w: &mut Writer, node: &'static Node) {
    encode(w, node, None)
}

/// A decoded value of some [`Node`], re-encodable as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opaque(Box<Value>);

/// A SEQUENCE's extension bitmap length and the additions present (index,
/// open type contents).
type Additions = (usize, Vec<(usize, Vec<u8>)>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// An ENUMERATED or CHOICE index beyond the root: kept with its open
    /// type (empty for ENUMERATED).
    Ext(u32, Vec<u8>),
    Enum(u32),
    Octets(Vec<u8>),
    Bits(Vec<u8>, usize),
    Oid(super::per::Oid),
    Units(Vec<u32>),
    Sequence {
        fields: Vec<Option<Value>>,
        /// The extension bitmap's length and the additions present.
        ext: Option<Additions>,
    },
    Choice(u32, Box<Value>),
    List(Vec<Value>),
}

impl Opaque {
    /// Decodes a value of shape `node`.
    pub(crate) fn decode(r: &mut Reader<'_>, node: &'static Node) -> Result<Opaque> {
        decode(r, node).map(|v| Opaque(Box::new(v)))
    }

    /// Decodes and drops a value of shape `node`.
    pub(crate) fn skip(r: &mut Reader<'_>, node: &'static Node) -> Result<()> {
        decode(r, node).map(|_| ())
    }

    /// Encodes as shape `node`. A value that does not fit the shape (one
    /// decoded for another type) writes the shape's smallest value instead,
    /// so that the output still decodes.
    pub(crate) fn encode(&self, w: &mut Writer, node: &'static Node) {
        encode(w, node, Some(&self.0))
    }

    /// Decodes the root alternative `index` of CHOICE `choice`.
    pub(crate) fn decode_alt(
        r: &mut Reader<'_>,
        choice: &'static Node,
        index: usize,
    ) -> Result<Opaque> {
        match choice.alt(index) {
            Some(node) => Opaque::decode(r, node),
            None => Err(super::per::PerError::Constraint("choice index")),
        }
    }
}

/// A CHOICE alternative that is not modelled: a root one kept as its value,
/// an extension one kept as its open type's octets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAlt(Box<Unknown>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Unknown {
    alt: Alt,
    value: Option<Opaque>,
    open: Vec<u8>,
}

impl UnknownAlt {
    /// Decodes the rest of alternative `alt` of `choice` (the index has
    /// been read).
    pub(crate) fn decode(
        r: &mut Reader<'_>,
        choice: &'static Node,
        alt: Alt,
    ) -> Result<UnknownAlt> {
        match alt {
            Alt::Root(i) => Ok(UnknownAlt(Box::new(Unknown {
                alt,
                value: Some(Opaque::decode_alt(r, choice, i)?),
                open: Vec::new(),
            }))),
            Alt::Ext(_) => Ok(UnknownAlt(Box::new(Unknown {
                alt,
                value: None,
                open: r.open_type()?.to_vec(),
            }))),
        }
    }

    /// Writes the index and the value.
    pub(crate) fn encode(&self, w: &mut Writer, choice: &'static Node) {
        let (root, ext) = choice.root_alts();
        let u = &self.0;
        match u.alt {
            Alt::Root(i) if i < root => {
                w.choice(u.alt, root, ext);
                match (&u.value, choice.alt(i)) {
                    (Some(v), Some(node)) => v.encode(w, node),
                    (None, Some(node)) => encode(w, node, None),
                    _ => {}
                }
            }
            Alt::Ext(_) if ext => {
                w.choice(u.alt, root, ext);
                w.open_type(&u.open);
            }
            // Not an alternative of this CHOICE: write its first one.
            _ => {
                w.choice(Alt::Root(0), root.max(1), ext);
                if let Some(node) = choice.alt(0) {
                    encode(w, node, None)
                }
            }
        }
    }

    /// Which alternative.
    pub fn alternative(&self) -> Alt {
        self.0.alt
    }
}

fn decode(r: &mut Reader<'_>, node: &'static Node) -> Result<Value> {
    r.spend(1)?;
    Ok(match node {
        Node::Null => Value::Null,
        Node::Boolean => Value::Bool(r.boolean()?),
        Node::Integer { lb, ub, ext } => {
            if *ext && r.bit()? {
                return Ok(Value::Ext(0, r.unconstrained()?.to_be_bytes().to_vec()));
            }
            Value::Int(match (lb, ub) {
                (Some(lb), Some(ub)) => r.constrained(*lb, *ub)?,
                (Some(lb), None) => r.semi_constrained(*lb)?,
                _ => r.unconstrained()?,
            })
        }
        Node::Enumerated { root, ext } => match r.enumerated(usize::from(*root), *ext)? {
            Alt::Root(i) => Value::Enum(i as u32),
            Alt::Ext(i) => Value::Ext(i as u32, Vec::new()),
        },
        Node::OctetString(size) => Value::Octets(r.octet_string(*size)?),
        Node::BitString(size) => {
            let (b, n) = r.bit_string(*size)?;
            Value::Bits(b, n)
        }
        Node::ObjectIdentifier => Value::Oid(r.object_identifier()?),
        Node::String { size, bits } => Value::Units(r.string_units(*size, u32::from(*bits))?),
        Node::Sequence { ext, fields } => {
            let optional = fields.iter().filter(|f| f.optional).count();
            let pre = r.preamble(*ext, optional)?;
            let mut values = Vec::with_capacity(fields.len());
            let mut k = 0;
            for f in fields.iter() {
                let present = if f.optional {
                    k += 1;
                    pre.has(k - 1)
                } else {
                    true
                };
                values.push(if present {
                    Some(r.deeper(|r| decode(r, f.node))?)
                } else {
                    None
                });
            }
            let ext = if pre.extended {
                let e = r.extensions()?;
                let present = (0..e.count())
                    .filter_map(|i| e.get(i).map(|c| (i, c.to_vec())))
                    .collect();
                Some((e.count(), present))
            } else {
                None
            };
            Value::Sequence {
                fields: values,
                ext,
            }
        }
        Node::Choice { ext, root } => match r.choice(root.len(), *ext)? {
            Alt::Root(i) => {
                let alt = root
                    .get(i)
                    .ok_or(super::per::PerError::Constraint("choice index"))?;
                Value::Choice(i as u32, Box::new(r.deeper(|r| decode(r, alt))?))
            }
            Alt::Ext(i) => Value::Ext(i as u32, r.open_type()?.to_vec()),
        },
        Node::SequenceOf { size, of } => {
            let n = r.count(*size)?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(r.deeper(|r| decode(r, of))?);
            }
            Value::List(items)
        }
    })
}

/// Writes `v` as `node`, or the smallest value of `node` where `v` is
/// missing or of another shape.
fn encode(w: &mut Writer, node: &'static Node, v: Option<&Value>) {
    match node {
        Node::Null => {}
        Node::Boolean => w.boolean(matches!(v, Some(Value::Bool(true)))),
        Node::Integer { lb, ub, ext } => {
            if *ext {
                if let Some(Value::Ext(_, bytes)) = v {
                    w.bit(true);
                    let mut b = [0u8; 8];
                    let n = bytes.len().min(8);
                    b[8 - n..].copy_from_slice(&bytes[..n]);
                    w.unconstrained(i64::from_be_bytes(b));
                    return;
                }
                w.bit(false);
            }
            let x = match v {
                Some(Value::Int(x)) => *x,
                _ => lb.unwrap_or(0),
            };
            match (lb, ub) {
                (Some(lb), Some(ub)) => w.constrained(x, *lb, *ub),
                (Some(lb), None) => w.semi_constrained(x, *lb),
                _ => w.unconstrained(x),
            }
        }
        Node::Enumerated { root, ext } => {
            let alt = match v {
                Some(Value::Enum(i)) => Alt::Root(*i as usize),
                Some(Value::Ext(i, _)) if *ext => Alt::Ext(*i as usize),
                _ => Alt::Root(0),
            };
            w.enumerated(alt, usize::from(*root), *ext)
        }
        Node::OctetString(size) => match v {
            Some(Value::Octets(b)) => w.octet_string(b, *size),
            _ => w.octet_string(&[], *size),
        },
        Node::BitString(size) => match v {
            Some(Value::Bits(b, n)) => w.bit_string(b, *n, *size),
            _ => w.bit_string(&[], 0, *size),
        },
        Node::ObjectIdentifier => match v {
            Some(Value::Oid(o)) => w.object_identifier(o),
            _ => w.object_identifier(&super::per::Oid::new(&[0, 0])),
        },
        Node::String { size, bits } => match v {
            Some(Value::Units(u)) => w.string_units(u, *size, u32::from(*bits)),
            _ => w.string_units(&[], *size, u32::from(*bits)),
        },
        Node::Sequence { ext, fields } => {
            let (values, extension) = match v {
                Some(Value::Sequence { fields: f, ext: e }) if f.len() == fields.len() => {
                    (Some(f), e.as_ref())
                }
                _ => (None, None),
            };
            let present: Vec<bool> = fields
                .iter()
                .enumerate()
                .filter(|(_, f)| f.optional)
                .map(|(i, _)| values.is_some_and(|vs| vs.get(i).is_some_and(|x| x.is_some())))
                .collect();
            w.preamble(ext.then_some(extension.is_some()), &present);
            for (i, f) in fields.iter().enumerate() {
                let value = values.and_then(|vs| vs.get(i)).and_then(|x| x.as_ref());
                if f.optional && value.is_none() {
                    continue;
                }
                encode(w, f.node, value);
            }
            if let (true, Some((count, additions))) = (*ext, extension) {
                w.extensions(*count, additions);
            }
        }
        Node::Choice { ext, root } => match v {
            Some(Value::Choice(i, inner)) if (*i as usize) < root.len() => {
                w.choice(Alt::Root(*i as usize), root.len(), *ext);
                if let Some(alt) = root.get(*i as usize) {
                    encode(w, alt, Some(inner));
                }
            }
            Some(Value::Ext(i, open)) if *ext => {
                w.choice(Alt::Ext(*i as usize), root.len(), *ext);
                w.open_type(open);
            }
            _ => {
                w.choice(Alt::Root(0), root.len().max(1), *ext);
                if let Some(alt) = root.first() {
                    encode(w, alt, None);
                }
            }
        },
        Node::SequenceOf { size, of } => {
            let items: &[Value] = match v {
                Some(Value::List(items)) => items,
                _ => &[],
            };
            let n = w.count(items.len(), *size);
            for item in items.iter().take(n) {
                encode(w, of, Some(item));
            }
            for _ in items.len().min(n)..n {
                encode(w, of, None);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::schema;
    use super::*;

    #[test]
    fn a_decoded_value_encodes_back_to_the_same_bits() {
        // An H.261 capability as pycrate encodes it: qcifMPI 1, cifMPI 1,
        // temporalSpatialTradeOff false, maxBitRate 6217,
        // stillImageTransmission false.
        let b = [0x60, 0x18, 0x48, 0x00];
        let mut r = Reader::new(&b);
        let v = Opaque::decode(&mut r, &schema::H245_H261_VIDEO_CAPABILITY).unwrap();
        let mut w = Writer::new();
        v.encode(&mut w, &schema::H245_H261_VIDEO_CAPABILITY);
        assert_eq!(w.position(), r.position());
        let mut again = w.finish();
        again.resize(b.len(), 0);
        assert_eq!(again, b);
    }

    #[test]
    fn a_value_of_another_shape_still_encodes_something_decodable() {
        let b = [0x80, 0x09, 0x00, 0x00, 0x3d, 0x03, b'a', b'b', b'c'];
        let v = Opaque::decode(&mut Reader::new(&b), &schema::H245_NON_STANDARD_PARAMETER);
        let v = v.unwrap();
        let mut w = Writer::new();
        v.encode(&mut w, &schema::H245_H261_VIDEO_CAPABILITY);
        let out = w.finish();
        assert!(
            Opaque::decode(&mut Reader::new(&out), &schema::H245_H261_VIDEO_CAPABILITY).is_ok()
        );
    }
}
