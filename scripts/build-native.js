#!/usr/bin/env node
// Builds the native parts from source: applies our patch to fuse-native,
// compiles it against the system libfuse 2.9, then compiles our own syscall
// addon. npm 11 runs no install script of a dependency unless allowed, so
// the project's own postinstall runs this explicitly.
'use strict'

const { execFileSync } = require('child_process')
const fs = require('fs')
const path = require('path')

const root = path.join(__dirname, '..')
const bin = (name) => path.join(root, 'node_modules', '.bin', name)
const fuseNativeDir = path.join(root, 'node_modules', 'fuse-native')

function run(cmd, args, cwd) {
  console.error(`> ${path.basename(cmd)} ${args.join(' ')}`)
  execFileSync(cmd, args, { cwd, stdio: 'inherit' })
}

function isUpToDate(target, sources) {
  if (!fs.existsSync(target)) return false
  const built = fs.statSync(target).mtimeMs
  return sources.every((s) => fs.statSync(s).mtimeMs <= built)
}

function checkSystemPackages() {
  try {
    execFileSync('pkg-config', ['--exists', 'fuse'], { stdio: 'ignore' })
  } catch {
    console.error(
      'error: libfuse 2.9 development files not found (pkg-config fuse). ' +
        'Install them with: apt-get install -y libfuse-dev libfuse2 fuse3 pkg-config build-essential'
    )
    process.exit(1)
  }
}

// node-gyp downloads Node's headers unless told where they are, and npm
// passes its nodedir setting only to the scripts it runs itself.
function nodeGypArgs() {
  const prefix = path.join(path.dirname(process.execPath), '..')
  const local = fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined
  const nodedir = process.env.npm_config_nodedir || local
  return nodedir ? ['rebuild', `--nodedir=${nodedir}`] : ['rebuild']
}

checkSystemPackages()
run(bin('patch-package'), ['--error-on-fail'], root)

const fuseAddon = path.join(fuseNativeDir, 'build', 'Release', 'fuse.node')
const fuseSources = ['fuse-native.c', 'binding.gyp'].map((f) => path.join(fuseNativeDir, f))
if (!isUpToDate(fuseAddon, fuseSources)) run(bin('node-gyp'), nodeGypArgs(), fuseNativeDir)

const hostAddon = path.join(root, 'build', 'Release', 'tsoverlay_host.node')
const hostSources = ['native/host.c', 'binding.gyp'].map((f) => path.join(root, f))
if (!isUpToDate(hostAddon, hostSources)) run(bin('node-gyp'), nodeGypArgs(), root)
