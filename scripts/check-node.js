// Every npm script runs this first: Switchyard needs Node >= 22.12 (type stripping,
// stable net/dgram behaviour). The `node` devDependency puts Node 24 first on PATH
// inside npm scripts, so this only fails when that install is missing.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 12)) {
  console.error(`switchyard: Node ${process.version} is too old; need >= 22.12. Run \`npm install\` (it brings Node 24 for npm scripts).`);
  process.exit(1);
}
if (process.env.SWITCHYARD_SHOW_NODE) console.error(`node ${process.version}`);
