export { Producer } from './producer.js';
export type { ProducerOptions, PublishResult, Publication } from './producer.js';
export { tokenDir, tokenFilePath, tokenFileFor, readTokenFile } from './token-file.js';
export { WarrenError, ERROR_CODES } from '@warren/protocol';
export type { ErrorCode, MessageData, MessageOptions } from '@warren/protocol';
export { signChannelToken } from '@warren/protocol';
export type { ChannelTokenClaims, ChannelTokenInput } from '@warren/protocol';
