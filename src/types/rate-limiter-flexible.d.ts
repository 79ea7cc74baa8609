/**
 * rate-limiter-flexible's class modules on their own (CommonJS, `module.exports = Class`); see
 * src/limits/rate-limiter-flexible.ts.
 */
declare module 'rate-limiter-flexible/lib/RateLimiterMemory.js' {
  import type { RateLimiterMemory } from 'rate-limiter-flexible';

  const RateLimiterMemoryModule: typeof RateLimiterMemory;
  export default RateLimiterMemoryModule;
}

declare module 'rate-limiter-flexible/lib/RateLimiterRedis.js' {
  import type { RateLimiterRedis } from 'rate-limiter-flexible';

  const RateLimiterRedisModule: typeof RateLimiterRedis;
  export default RateLimiterRedisModule;
}

declare module 'rate-limiter-flexible/lib/RateLimiterRes.js' {
  import type { RateLimiterRes } from 'rate-limiter-flexible';

  const RateLimiterResModule: typeof RateLimiterRes;
  export default RateLimiterResModule;
}

declare module 'rate-limiter-flexible/lib/RLWrapperTimeouts.js' {
  import type { RLWrapperTimeouts } from 'rate-limiter-flexible';

  const RLWrapperTimeoutsModule: typeof RLWrapperTimeouts;
  export default RLWrapperTimeoutsModule;
}
