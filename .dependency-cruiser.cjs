/**
 * The layering of xtr's house, checked on every `npm test` (test/layering.test.ts).
 *
 *   xt/          the contract floor: PacketContext, extension types, services and
 *                state interfaces. Imports nothing of the project.
 *   dataplane/   packet I/O and wire formats. Imports only xt/.
 *   geoip-db/    builders and loaders. Imports only xt/ and dataplane/.
 *   modules/     one file per extension. Imports xt/, dataplane/, geoip-db/ and its
 *                helpers in modules/lib/ - never another extension, never the router.
 *   modules/lib/ shared helpers (libxtables' role). Same floor as modules/, but never
 *                imports an extension file.
 *   router/      the appliance: may use everything below it.
 *   scripts/, bench/, test/: on top; nothing in the product imports them.
 *
 * Why: an extension written against xt/ keeps working when the router, conntrack or
 * NAT change shape, and the codec can be tested and reused without the router.
 */
module.exports = {
  forbidden: [
    {
      name: 'xt-imports-nothing',
      comment: 'xt/ is the contract floor: it may only import itself (and node builtins).',
      severity: 'error',
      from: { path: '^xt/' },
      to: { path: '^(dataplane|router|modules|geoip-db|scripts|bench|test)/' },
    },
    {
      name: 'dataplane-imports-only-xt',
      comment: 'The codec and packet I/O sit below the appliance: only xt/ is beneath them.',
      severity: 'error',
      from: { path: '^dataplane/' },
      to: { path: '^(router|modules|geoip-db|scripts|bench|test)/' },
    },
    {
      name: 'geoip-db-below-modules',
      comment: 'Builders and loaders are a library the geoip/asn matches use, not rule glue.',
      severity: 'error',
      from: { path: '^geoip-db/' },
      to: { path: '^(router|modules|scripts|bench|test)/' },
    },
    {
      name: 'modules-not-router',
      comment: 'Extensions use the contract (xt/) and the platform services, never router internals.',
      severity: 'error',
      from: { path: '^modules/' },
      to: { path: '^(router|scripts|bench|test)/' },
    },
    {
      name: 'extension-imports-no-extension',
      comment: 'One self-contained file per extension: shared code goes to modules/lib/.',
      severity: 'error',
      from: { path: '^modules/[^/]+\\.ts$', pathNot: '^modules/registry\\.ts$' },
      to: { path: '^modules/[^/]+\\.ts$' },
    },
    {
      name: 'lib-imports-no-extension',
      comment: 'Helpers are below the extensions that use them.',
      severity: 'error',
      from: { path: '^modules/lib/' },
      to: { path: '^modules/[^/]+\\.ts$' },
    },
    {
      name: 'product-imports-no-tests-or-benches',
      comment: 'Tests and benchmarks sit on top; the product never depends on them.',
      severity: 'error',
      from: { path: '^(xt|dataplane|geoip-db|modules|router)/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist|build)/' },
    tsPreCompilationDeps: true,
    // TypeScript 7 (the native compiler) has no JS parser API dependency-cruiser can use: swc reads the .ts files.
    parser: 'swc',
    tsConfig: { fileName: 'tsconfig.json' },
    moduleSystems: ['es6'],
  },
};
