/** undici's Pool module on its own (CommonJS, `module.exports = Pool`); see src/proxy/undici-pool.ts. */
declare module 'undici/lib/dispatcher/pool.js' {
  import type { Pool } from 'undici';

  const PoolModule: typeof Pool;
  export default PoolModule;
}
