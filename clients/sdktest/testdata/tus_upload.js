// Uploads a file to a Parley gateway with the npm package tus-js-client (a
// third-party tus 1.0 client), as the interoperability test runs it:
//   node tus_upload.js ENDPOINT TOKEN FILE TO SHA256
// Prints the upload URL on success; exits 1 with the error otherwise.
const tus = require('tus-js-client');
const fs = require('fs');

const [endpoint, token, file, to, sha256] = process.argv.slice(2);
const data = fs.readFileSync(file);
const upload = new tus.Upload(data, {
  endpoint,
  headers: { Authorization: 'Bearer ' + token },
  metadata: { filename: 'from-tus-js.bin', filetype: 'application/octet-stream', sha256, to },
  chunkSize: 3 * 1024 * 1024,
  retryDelays: [0, 500, 1000],
  onError(err) {
    console.error('upload failed: ' + err);
    process.exit(1);
  },
  onSuccess() {
    console.log(upload.url);
    process.exit(0);
  },
});
upload.start();
