// The durable Node.js baseline of issue 17 (the peer in bench/run.sh): node_receiver.js plus one
// append of the body and one fdatasync per request before the 200.
//   node node_fsync_receiver.js PORT FILE
const fs = require("node:fs");
const http = require("node:http");
const fd = fs.openSync(process.argv[3], "a");
http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const reply = (err) => {
      if (err) return res.writeHead(500).end();
      res.writeHead(200, { "Content-Type": "application/json" }).end('{"status":"accepted"}');
    };
    fs.write(fd, Buffer.concat(chunks), (err) => (err ? reply(err) : fs.fdatasync(fd, reply)));
  });
}).listen(Number(process.argv[2]), "127.0.0.1");
