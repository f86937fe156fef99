// The upload-and-browse page (/images/browse). The page itself is public; uploading and
// listing need the store's token, which is asked for once, kept in this tab's session
// storage and sent only in Authorization headers (never in a URL). Reads by ID are public.
// Whatever the server sends (titles above all) is shown with textContent, never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "imgproxy-store-token";
  const $ = (id) => document.getElementById(id);

  // ?limit=N on the page's own URL sets the page size (1 to 1000, as the API allows).
  const pageSize = (() => {
    const n = Number.parseInt(new URLSearchParams(window.location.search).get("limit") || "", 10);
    return n >= 1 && n <= 1000 ? n : 24;
  })();

  // Paging: the cursor of the page shown (null: the first page) and those of the pages before it.
  let cursor = null;
  let earlier = [];
  let nextCursor = null;
  let listing = 0; // a listing answered after a newer one was asked for is dropped
  let viewed = null; // the ID in the viewer

  class Unauthorized extends Error {}

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  const token = () => sessionStorage.getItem(TOKEN_KEY);

  async function api(path, { method = "GET", body = undefined, auth = false } = {}) {
    const headers = { Accept: "application/json" };
    if (auth) {
      const t = token();
      if (!t) throw new Unauthorized("The store's token is needed.");
      headers.Authorization = "Bearer " + t;
    }
    const response = await fetch(path, { method, body, headers, credentials: "omit", cache: "no-store" });
    let answer = null;
    try {
      answer = await response.json();
    } catch (e) {
      answer = null;
    }
    if (response.status === 401) throw new Unauthorized("The token was refused: enter it again.");
    if (!response.ok) {
      const reason = answer && typeof answer.error === "string" ? answer.error : response.statusText;
      throw new ApiError(response.status, `${response.status}: ${reason}`);
    }
    return answer;
  }

  function setStatus(text, isError = false) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", isError);
  }

  function fail(error) {
    if (error instanceof Unauthorized) {
      sessionStorage.removeItem(TOKEN_KEY);
      askToken(error.message, true);
    } else {
      setStatus(error instanceof ApiError ? error.message : `Error: ${error.message}`, true);
    }
  }

  function askToken(reason, isError = false) {
    $("main").hidden = true;
    $("forget").hidden = true;
    $("token-form").hidden = false;
    $("token-reason").textContent = reason;
    $("token-reason").classList.toggle("error", isError);
    $("token").focus();
  }

  function showMain() {
    $("token-form").hidden = true;
    $("main").hidden = false;
    $("forget").hidden = false;
  }

  const imagePath = (id) => `/images/${encodeURIComponent(id)}`;
  const sizeText = (image) => `${image.width}×${image.height} ${String(image.format || "").toUpperCase()}`;

  // The variant called `name`, else the smallest (small) or the largest up to 1200 wide (large).
  function variant(doc, name, small) {
    const all = Object.values(doc.variants || {});
    if (doc.variants && doc.variants[name]) return doc.variants[name];
    const area = (v) => v.width * v.height;
    if (small) return all.sort((a, b) => area(a) - area(b))[0] || null;
    const fitting = all.filter((v) => v.width <= 1200).sort((a, b) => area(b) - area(a));
    return fitting[0] || all[0] || null;
  }

  function showThumbnail(button, doc) {
    const thumb = variant(doc, "thumbnail", true);
    if (!thumb) {
      button.textContent = doc.state === "pending" ? "(being made)" : "(no preview)";
      return;
    }
    const img = document.createElement("img");
    img.src = thumb.url;
    img.width = thumb.width;
    img.height = thumb.height;
    img.alt = doc.title || "";
    button.replaceChildren(img);
  }

  // One image of a grid: its thumbnail (from its public document), title and original size.
  function card(image, doc = null) {
    const li = document.createElement("li");
    li.dataset.id = image.id;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "thumb";
    button.title = "View";
    button.textContent = "…";
    button.addEventListener("click", () => view(image.id));
    const title = document.createElement("div");
    title.className = "title";
    title.textContent = image.title || "(untitled)";
    const size = document.createElement("div");
    size.className = "size";
    size.textContent = sizeText(image);
    li.append(button, title, size);
    if (doc) {
      showThumbnail(button, doc);
    } else {
      api(imagePath(image.id)).then((d) => showThumbnail(button, d), () => {
        button.textContent = "(no preview)";
      });
    }
    return li;
  }

  async function loadPage(after, before) {
    const mine = ++listing;
    $("previous").disabled = true;
    $("next").disabled = true;
    const params = new URLSearchParams({ limit: String(pageSize) });
    if (after) params.set("after", after);
    let page;
    try {
      page = await api("/images?" + params, { auth: true });
    } catch (error) {
      if (mine !== listing) return;
      if (error instanceof ApiError && error.status === 404 && after) {
        setStatus("That page is gone (its image was deleted): back to the first page.", true);
        loadPage(null, []);
        return;
      }
      fail(error);
      return;
    }
    if (mine !== listing) return;
    cursor = after;
    earlier = before;
    nextCursor = page.next;
    $("grid").replaceChildren(...page.images.map((image) => card(image)));
    $("empty").hidden = page.images.length > 0;
    $("page-number").textContent = `(page ${earlier.length + 1})`;
    $("previous").disabled = earlier.length === 0;
    $("next").disabled = !nextCursor;
  }

  async function view(id) {
    try {
      const doc = await api(imagePath(id));
      const large = variant(doc, "medium", false);
      viewed = doc.id;
      $("viewer").hidden = false;
      $("viewer").dataset.id = doc.id;
      $("viewer-title").textContent = doc.title || "(untitled)";
      $("viewer-size").textContent = sizeText(doc);
      const img = $("viewer-image");
      img.alt = doc.title || "";
      if (large) {
        img.src = large.url;
        img.width = large.width;
        img.height = large.height;
        img.hidden = false;
      } else {
        img.removeAttribute("src");
        img.hidden = true;
      }
      setStatus("");
    } catch (error) {
      fail(error);
    }
  }

  async function neighbour(direction) {
    if (!viewed) return;
    try {
      const found = await api(`${imagePath(viewed)}/${direction}`, { auth: true });
      await view(found.id);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        setStatus(direction === "next" ? "This is the last image." : "This is the first image.");
      } else {
        fail(error);
      }
    }
  }

  async function upload(event) {
    event.preventDefault();
    const file = $("file").files[0];
    if (!file) {
      setStatus("Choose an image first.", true);
      return;
    }
    const form = new FormData();
    form.append("image", file);
    const title = $("title").value.trim();
    if (title) form.append("title", title);
    $("upload").disabled = true;
    setStatus(`Uploading ${file.name}…`);
    try {
      const doc = await api("/images", { method: "POST", body: form, auth: true });
      setStatus(`Uploaded ${doc.title || file.name} (${sizeText(doc)}).`);
      $("upload-form").reset();
      $("uploaded").hidden = false;
      $("uploaded-grid").prepend(card(doc, doc));
      loadPage(cursor, earlier); // it shows here too when this is the last page
    } catch (error) {
      fail(error);
    } finally {
      $("upload").disabled = false;
    }
  }

  function start() {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      $("token").value = "";
      showMain();
      setStatus("");
      loadPage(null, []);
    });
    $("forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      askToken("The token is forgotten in this tab.");
    });
    $("upload-form").addEventListener("submit", upload);
    $("previous").addEventListener("click", () => {
      if (earlier.length) loadPage(earlier[earlier.length - 1], earlier.slice(0, -1));
    });
    $("next").addEventListener("click", () => {
      if (nextCursor) loadPage(nextCursor, [...earlier, cursor]);
    });
    $("viewer-previous").addEventListener("click", () => neighbour("previous"));
    $("viewer-next").addEventListener("click", () => neighbour("next"));
    $("viewer-close").addEventListener("click", () => {
      $("viewer").hidden = true;
      viewed = null;
    });
    if (token()) {
      showMain();
      loadPage(null, []);
    } else {
      askToken("Uploading and browsing need the store's token.");
    }
  }

  start();
})();
