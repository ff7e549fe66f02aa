// Sends the deep-linking answer back to the LMS at once; the Continue button covers no-script.
document.getElementById("deep-link-return").submit();
