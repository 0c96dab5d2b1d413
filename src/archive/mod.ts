/**
 * The archive room: reading the server's snapshot archives (S2 around a tar, or NATSARC1 from
 * 2.15). It imports nothing of the project.
 */
export { ArchiveError } from "./errors.ts";
export { S2Decoder, MaxBlockSize, maskedCrc, type S2DecoderOptions } from "./s2-decoder.ts";
export { s2Decompress, type S2DecompressOptions } from "./s2-decompress.ts";
export { ArchiveInspector, type ArchiveFormat, type ArchiveSummary } from "./inspector.ts";
export { archiveReader, OffThreadInspector, type ArchiveReader } from "./off-thread.ts";
