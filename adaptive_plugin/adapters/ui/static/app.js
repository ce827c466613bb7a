// Progressive enhancement only: every form works without this file.
document.documentElement.classList.add("js");
// Forms marked data-confirm ask before they are sent (revoking keys).
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
// The new API key, shown once, is selected when focused so that it can be copied at once.
document.addEventListener("focusin", function (event) {
  if (event.target.classList && event.target.classList.contains("secret")) {
    event.target.select();
  }
});
