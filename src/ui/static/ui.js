// kura web UI: the only script. Everything works without it; it adds "Copy" buttons to pull
// commands (the input stays selectable by hand and keyboard without JS).
document.querySelectorAll('.copybtn').forEach((btn) => {
  const input = btn.previousElementSibling;
  btn.hidden = false;
  btn.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(input.value);
      btn.textContent = 'Copied';
    } catch (e) {
      input.select();
      btn.textContent = 'Press Ctrl+C';
    }
    setTimeout(() => { btn.textContent = 'Copy'; }, 2000);
  });
});
