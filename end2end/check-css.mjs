// Checks that every Tailwind class the UI's Rust sources use is present in
// the stylesheet cargo-leptos built (target/site/pkg/lockstep.css), so a
// class the CSS compiler does not know fails the build instead of silently
// rendering unstyled. Usage: node end2end/check-css.mjs [css path]
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
// The build names it by its content (lockstep.<hash>.css).
const pkg = join(root, "target/site/pkg");
const built = readdirSync(pkg).filter((f) => /^lockstep(\.[\w-]+)?\.css$/.test(f));
const cssPath = process.argv[2] ?? join(pkg, built.sort((a, b) => statSync(join(pkg, b)).mtimeMs - statSync(join(pkg, a)).mtimeMs)[0] ?? "lockstep.css");
const css = readFileSync(cssPath, "utf8");

function rustFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? rustFiles(p) : p.endsWith(".rs") ? [p] : [];
  });
}

// Class lists are string literals next to `class=` or inside class closures.
const classes = new Set();
for (const file of rustFiles(join(root, "app/src"))) {
  const src = readFileSync(file, "utf8");
  for (const m of src.matchAll(/class=("([^"]*)"|move \|\| \{[\s\S]*?\n\s*\})/g)) {
    for (const lit of m[0].matchAll(/"([^"]*)"/g)) {
      lit[1].split(/\s+/).filter(Boolean).forEach((c) => classes.add(c));
    }
  }
  // Helpers that return class lists: `fn badge_class(..) -> &str { .. }`.
  for (const m of src.matchAll(/\nfn \w*class\w*\([\s\S]*?\n\}/g)) {
    // Only literals that are class lists (match arms name statuses).
    for (const lit of [...m[0].matchAll(/"([^"]*)"/g)].filter((l) => /\s/.test(l[1]))) {
      lit[1].split(/\s+/).filter(Boolean).forEach((c) => classes.add(c));
    }
  }
  for (const m of src.matchAll(/let class = if[\s\S]*?;\n/g)) {
    for (const lit of m[0].matchAll(/"([^"]*)"/g)) {
      lit[1].split(/\s+/).filter(Boolean).forEach((c) => classes.add(c));
    }
  }
}

const escape = (c) => c.replace(/[^a-zA-Z0-9_-]/g, (ch) => "\\" + ch);
const missing = [...classes].filter((c) => {
  const selector = "." + escape(c);
  const re = new RegExp(selector.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "(?![a-zA-Z0-9_-])");
  return !re.test(css);
});

console.log(`checked ${classes.size} classes used in app/src against ${cssPath}`);
if (missing.length > 0) {
  console.error(`missing from the CSS: ${missing.join(" ")}`);
  process.exit(1);
}
console.log("every class is in the stylesheet");
