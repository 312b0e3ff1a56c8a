// Package accounting is the pure core of verifiable accounting: usage
// records computed from finished jobs, their prices and payouts, a canonical
// encoding and Keccak-256 hash per record, RFC 6962 Merkle trees over epochs
// of records, inclusion proofs and tamper detection. Everything here is data
// in, data out: no I/O and no clock, so controllers, the CLI and outside
// verifiers compute the same answers.
//
// # Record hash (stockade-usage-record/v1)
//
// A record's hash is Keccak-256 (the pre-standard padding Ethereum uses) of
// its canonical encoding. Integers are big-endian; str(x) is the length of
// x in 4 bytes followed by the bytes of x, and name(x) the same with a
// 1-byte length (names are ASCII constants under 256 bytes).
//
//	record  = name("stockade-usage-record/v1") count field...
//	count   = number of fields in 4 bytes (38 in v1)
//	field   = name(name) tag str(value)
//
// Fields appear once each, in ascending byte order of their names, which
// are the record's JSON names. The one-byte tag gives the value's type:
//
//	'U' uint64       8 bytes big-endian
//	'I' int64        8 bytes big-endian two's complement
//	'T' time         as 'I': Unix nanoseconds; 0 means unset
//	'S' string       UTF-8 bytes
//	'H' hash         32 bytes
//	'L' string list  4-byte count, then str(item) per item, in record order
//	'M' string→int64 4-byte count, then str(key) and 8-byte value per entry,
//	                 keys unique and in ascending byte order
//
// Naming every field and tagging its type means a renamed, added, removed
// or retyped field changes every hash: the schema cannot drift unnoticed.
// No floating-point value is hashed.
//
// The JSON form uses the same names, hashes as "0x"-prefixed hex and times
// as RFC 3339 with nanoseconds (omitted when unset); decoding refuses
// values the encoding could not tell apart.
//
// Private job fields enter a record only as hashes (zero when the field was
// empty): Keccak-256 of str("stockade-private/v1/" + kind) count str(part)...
// with kind and parts
//
//	command  script, argv...
//	comment  comment
//	workdir  working directory
//	output   standard output path, standard error path
//
// # Merkle tree
//
// An epoch's root is the RFC 6962 Merkle tree hash with Keccak-256: leaf =
// Keccak256(0x00 || record hash), node = Keccak256(0x01 || left || right),
// and a tree of n > 1 leaves splits at the largest power of two below n.
// Audit paths are listed from the leaf upwards, as in RFC 6962.
package accounting
