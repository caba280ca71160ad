// Starts ReDoc on the API docs page (templates/drf_spectacular/redoc.html): a file of its own,
// as the Content Security Policy allows no inline script.
(() => {
  const container = document.getElementById("redoc-container");
  window.Redoc.init(container.dataset.specUrl, {}, container);
})();
