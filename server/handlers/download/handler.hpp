#pragma once
// The `download` handler: for a complete (status 200) event, fetches every file of output[],
// error[] and deleted[] with `parallel` transfers, verifies each while it streams, stores it
// atomically under dir/<log-id>/, and writes manifest.json and log.ndjson there. Status 202
// events are done at once (nothing to fetch yet). A retried delivery skips the files already
// verified and resumes cut transfers. See transfer.hpp for one file's life. With `attachments`
// set to download, the attachments of the verified DocumentReference files are fetched next
// (attachment_transfer.hpp) and listed in manifest.json.
#include <string>

#include "server/handlers/download/attachment_transfer.hpp"
#include "server/handlers/download/token.hpp"
#include "server/handlers/download/transfer.hpp"
#include "server/handlers/handler.hpp"

namespace fbr::server {

class DownloadHandler final : public Handler {
 public:
  /// Throws std::runtime_error naming the handler when token_env names an unset variable.
  DownloadHandler(std::string name, config::DownloadHandler settings, const Logger& log);

 protected:
  Outcome run(const Delivery& delivery) override;

 private:
  config::DownloadHandler settings_;
  download::TokenSource tokens_;
  download::TransferSettings transfer_;
  download::AttachmentSettings attachments_;
};

}  // namespace fbr::server
