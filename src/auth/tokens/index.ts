export {
  ACCESS_TOKEN_TYP,
  type AccessTokenClaims,
  AccessTokenError,
  type AccessTokenFailure,
  AccessTokens,
  type AccessTokensOptions,
  issuerFromPublicUrl,
  type MintAccessTokenInput,
  type MintedAccessToken,
  type VerifyAccessTokenOptions,
} from './access-tokens.js';
export {
  hashRefreshToken,
  type IssuedRefreshToken,
  type RefreshFamily,
  type RefreshFamilyInput,
  RefreshTokenError,
  type RefreshTokenFailure,
  RefreshTokens,
  type RefreshTokensOptions,
} from './refresh-tokens.js';
export {
  type ActiveSigningKey,
  type Jwks,
  type PublicJwk,
  SIGNING_ALG,
  SigningKeyError,
  SigningKeys,
  type SigningKeysOptions,
} from './signing-keys.js';
