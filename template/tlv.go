package template

import (
	"encoding/hex"
	"fmt"
)

// MaxDepth bounds the nesting of constructed elements the decoder follows.
// SAIP needs 6 (genericFileManagement → command list → command → FCP →
// proprietary info); anything deeper is rejected so that hostile input
// cannot exhaust the stack.
const MaxDepth = 32

// maxLength bounds a single length field (16 MiB): no profile is that
// large, and it keeps arithmetic on lengths far from overflow.
const maxLength = 1 << 24

// Tag is a BER tag, its identifier octets read as a big-endian number:
// 0xA0 for [0] constructed, 0xBF1F for [31] constructed, 0x30 for SEQUENCE.
type Tag uint32

// Constructed reports whether the tag has the constructed bit set.
func (t Tag) Constructed() bool { return t.first()&0x20 != 0 }

// Len is the number of identifier octets.
func (t Tag) Len() int {
	switch {
	case t > 0xFFFFFF:
		return 4
	case t > 0xFFFF:
		return 3
	case t > 0xFF:
		return 2
	}
	return 1
}

func (t Tag) first() byte { return byte(t >> (8 * uint(t.Len()-1))) }

func (t Tag) String() string {
	var b [4]byte
	n := t.Len()
	for i := 0; i < n; i++ {
		b[i] = byte(t >> (8 * uint(n-1-i)))
	}
	return hex.EncodeToString(b[:n])
}

func (t Tag) appendTo(dst []byte) []byte {
	n := t.Len()
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, byte(t>>(8*uint(i))))
	}
	return dst
}

// tlvError is a position-only syntax error; the caller adds the PE context.
type tlvError struct {
	off int // absolute offset of the element whose header is bad
	tag Tag // the element's tag when it could be read, else 0
	err error
}

// readHeader parses the tag and length at b[off:end]. It returns the tag,
// the header length and the value length, checking DER rules: definite,
// minimal lengths, minimal high tag numbers, value within end.
func readHeader(b []byte, off, end int) (Tag, int, int, *tlvError) {
	p := off
	if p >= end {
		return 0, 0, 0, &tlvError{off, 0, fmt.Errorf("missing tag: %w", ErrTruncated)}
	}
	t := Tag(b[p])
	if b[p] == 0 {
		return 0, 0, 0, &tlvError{off, 0, fmt.Errorf("zero tag (end-of-contents): %w", ErrBadTag)}
	}
	p++
	if t&0x1F == 0x1F {
		n := 0
		for {
			if p >= end {
				return 0, 0, 0, &tlvError{off, 0, fmt.Errorf("multi-byte tag: %w", ErrTruncated)}
			}
			c := b[p]
			if n == 0 && (c == 0x80 || c < 0x1F) {
				return 0, 0, 0, &tlvError{off, 0, fmt.Errorf("tag %s… not minimal: %w", Tag(t).String(), ErrNotDER)}
			}
			t = t<<8 | Tag(c)
			p++
			n++
			if c&0x80 == 0 {
				break
			}
			if n == 3 {
				return 0, 0, 0, &tlvError{off, 0, fmt.Errorf("tag longer than 4 bytes: %w", ErrBadTag)}
			}
		}
	}
	if p >= end {
		return 0, 0, 0, &tlvError{off, t, fmt.Errorf("tag %s: missing length: %w", t, ErrTruncated)}
	}
	l := int(b[p])
	p++
	if l == 0x80 {
		return 0, 0, 0, &tlvError{off, t, fmt.Errorf("tag %s: %w", t, ErrIndefiniteLength)}
	}
	if l > 0x80 {
		n := l & 0x7F
		if n > 3 {
			return 0, 0, 0, &tlvError{off, t, fmt.Errorf("tag %s: %d length octets: %w", t, n, ErrNotDER)}
		}
		if p+n > end {
			return 0, 0, 0, &tlvError{off, t, fmt.Errorf("tag %s: length octets: %w", t, ErrTruncated)}
		}
		l = 0
		for i := 0; i < n; i++ {
			l = l<<8 | int(b[p+i])
		}
		p += n
		if l < 0x80 || (n > 1 && l < 1<<(8*uint(n-1))) {
			return 0, 0, 0, &tlvError{off, t, fmt.Errorf("tag %s: length %d not minimally encoded: %w", t, l, ErrNotDER)}
		}
		if l > maxLength {
			return 0, 0, 0, &tlvError{off, t, fmt.Errorf("tag %s: length %d too large: %w", t, l, ErrNotDER)}
		}
	}
	if l > end-p {
		return 0, 0, 0, &tlvError{off, t, fmt.Errorf("tag %s: length %d exceeds the %d bytes available: %w", t, l, end-p, ErrTruncated)}
	}
	return t, p - off, l, nil
}

// readHeaderFast handles the common case (one-byte tag, short length)
// inline and defers everything else to readHeader.
func readHeaderFast(b []byte, off, end int) (Tag, int, int, *tlvError) {
	if off+2 <= end {
		t0, l0 := b[off], b[off+1]
		if t0 != 0 && t0&0x1F != 0x1F && l0 < 0x80 && int(l0) <= end-off-2 {
			return Tag(t0), 2, int(l0), nil
		}
	}
	return readHeader(b, off, end)
}

// lenSize is the number of octets a DER length takes.
func lenSize(l int) int {
	switch {
	case l < 0x80:
		return 1
	case l <= 0xFF:
		return 2
	case l <= 0xFFFF:
		return 3
	case l <= 0xFFFFFF:
		return 4
	}
	return 5
}

func appendLen(dst []byte, l int) []byte {
	switch {
	case l < 0x80:
		return append(dst, byte(l))
	case l <= 0xFF:
		return append(dst, 0x81, byte(l))
	case l <= 0xFFFF:
		return append(dst, 0x82, byte(l>>8), byte(l))
	case l <= 0xFFFFFF:
		return append(dst, 0x83, byte(l>>16), byte(l>>8), byte(l))
	}
	return append(dst, 0x84, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
}

// Node is one element of the decoded DER tree. Primitive elements carry
// Value; constructed elements carry Children, unless they are opaque (kept
// as raw content, as for unknown PEs), in which case Value holds the content
// octets. Nodes produced by Decode point into the profile's private copy of
// the input; Offset and HeaderLen locate them there.
type Node struct {
	Tag       Tag
	HeaderLen uint8 // tag + length octets in the source
	Opaque    bool  // constructed, but content kept as raw bytes
	Offset    int   // absolute offset of the first tag octet; -1 for built nodes
	SourceLen int32 // content length in the source
	size      int32 // scratch for Encode: encoded content length
	Value     []byte
	Children  []*Node
}

// ValueOffset is the absolute offset of the first content octet.
func (n *Node) ValueOffset() int { return n.Offset + int(n.HeaderLen) }

// End is the absolute offset just past the element in the source.
func (n *Node) End() int { return n.Offset + int(n.HeaderLen) + int(n.SourceLen) }

// Child returns the first direct child with the given tag, or nil.
func (n *Node) Child(t Tag) *Node {
	if n == nil {
		return nil
	}
	for _, c := range n.Children {
		if c.Tag == t {
			return c
		}
	}
	return nil
}

// SetValue replaces the content of a primitive node (the slice is copied).
// The change is picked up by the next Encode.
func (n *Node) SetValue(v []byte) { n.Value = append([]byte(nil), v...) }

// measure computes and caches encoded content sizes bottom-up; returns the
// size of the whole TLV.
func (n *Node) measure() int {
	if n.Tag.Constructed() && !n.Opaque {
		s := 0
		for _, c := range n.Children {
			s += c.measure()
		}
		n.size = int32(s)
	} else {
		n.size = int32(len(n.Value))
	}
	return n.Tag.Len() + lenSize(int(n.size)) + int(n.size)
}

// appendEncoded writes the TLV using sizes cached by measure.
func (n *Node) appendEncoded(dst []byte) []byte {
	dst = n.Tag.appendTo(dst)
	dst = appendLen(dst, int(n.size))
	if n.Tag.Constructed() && !n.Opaque {
		for _, c := range n.Children {
			dst = c.appendEncoded(dst)
		}
		return dst
	}
	return append(dst, n.Value...)
}

// Encode returns the DER encoding of the subtree.
func (n *Node) Encode() []byte {
	sz := n.measure()
	return n.appendEncoded(make([]byte, 0, sz))
}

// nodeArena hands out Nodes and child slices in chunks to keep the decoder
// from making one allocation per element.
type nodeArena struct {
	nodes []Node
	ptrs  []*Node
	next  int // size of the next node chunk
}

func (a *nodeArena) node() *Node {
	if len(a.nodes) == cap(a.nodes) {
		n := a.next
		if n < 64 {
			n = 64
		}
		a.nodes = make([]Node, 0, n)
		a.next = 256
	}
	a.nodes = a.nodes[:len(a.nodes)+1]
	return &a.nodes[len(a.nodes)-1]
}

// children returns a zeroed slice of k child pointers.
func (a *nodeArena) children(k int) []*Node {
	if k == 0 {
		return nil
	}
	if cap(a.ptrs)-len(a.ptrs) < k {
		a.ptrs = make([]*Node, 0, max(k, 1024))
	}
	start := len(a.ptrs)
	a.ptrs = a.ptrs[:start+k]
	return a.ptrs[start : start+k : start+k]
}

// treeParser decodes a TLV and, recursively, the content of constructed
// elements.
type treeParser struct {
	b     []byte
	arena *nodeArena
	// Elements with tag opaqueTag at depth opaqueDepth are kept as raw
	// content (FCPs: see FCP).
	opaqueDepth int
	opaqueTag   Tag
}

func (p *treeParser) parseNode(off, end, depth int) (*Node, *tlvError) {
	t, hl, vl, err := readHeaderFast(p.b, off, end)
	if err != nil {
		return nil, err
	}
	n := p.arena.node()
	n.Tag, n.Offset, n.HeaderLen, n.SourceLen = t, off, uint8(hl), int32(vl)
	vs := off + hl
	if !t.Constructed() || (depth == p.opaqueDepth && t == p.opaqueTag) {
		n.Value = p.b[vs : vs+vl : vs+vl]
		n.Opaque = t.Constructed()
		return n, nil
	}
	if depth >= MaxDepth {
		return nil, &tlvError{off, t, fmt.Errorf("tag %s: %w", t, ErrTooDeep)}
	}
	// Count the children (headers only), then parse each straight into
	// its slot: no scratch stack, one pointer store per child. If the count
	// stops at a bad header, parsing stops at the same one with an error.
	k := 0
	for q := vs; q < vs+vl; k++ {
		_, chl, cvl, err := readHeaderFast(p.b, q, vs+vl)
		if err != nil {
			break
		}
		q += chl + cvl
	}
	kids := p.arena.children(k)
	for q, i := vs, 0; q < vs+vl; i++ {
		c, err := p.parseNode(q, vs+vl, depth+1)
		if err != nil {
			return nil, err
		}
		kids[i] = c
		q = c.End()
	}
	n.Children = kids
	return n, nil
}
