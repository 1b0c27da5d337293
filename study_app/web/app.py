"""The study app's Streamlit script (``streamlit run`` / ``st.App`` entry); the pages live in
study_app.web.pages so that they are importable and tested."""

from study_app.web.pages import main

main()
